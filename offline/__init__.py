"""Offline toolkit: inverse optimization (Problem 11), bag reading, `python -m offline.fit`."""
