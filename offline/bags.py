"""TEMPORARY re-export until the import rewrite: this module moved to hiopt_ros.bags (writing) and
hiopt_ros.bag_reader (reading); see docs/development.md."""
from hiopt_ros.bag_reader import *  # noqa: F401,F403  TEMPORARY re-export until the import rewrite
from hiopt_ros.bags import *  # noqa: F401,F403  TEMPORARY re-export until the import rewrite
