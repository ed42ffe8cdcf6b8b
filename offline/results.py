"""TEMPORARY re-export until the import rewrite: this module moved to sim.results (see docs/development.md)."""
import sys

from sim import results as _moved

sys.modules[__name__] = _moved  # TEMPORARY re-export until the import rewrite
