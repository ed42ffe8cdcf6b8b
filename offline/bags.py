"""TEMPORARY re-export until the import rewrite: this module moved to hiopt_ros.bags (see docs/development.md)."""
import sys

from hiopt_ros import bags as _moved

sys.modules[__name__] = _moved  # TEMPORARY re-export until the import rewrite
