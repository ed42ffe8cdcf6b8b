"""TEMPORARY re-export until the import rewrite: this module moved to sim.rl (see docs/development.md)."""
import sys

from sim import rl as _moved

sys.modules[__name__] = _moved  # TEMPORARY re-export until the import rewrite
