"""Supply-chain inventory management case study (paper §4, Appendix B.2, Eq. 31; issue 11)."""
