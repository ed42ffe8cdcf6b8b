"""Offline toolkit: inverse optimization (Problem 11), bag reading, `python -m offline.fit`.

Pyomo's logging, whatever the host did to `logging`: Pyomo (imported lazily by the modules that
solve with it) expects its loggers to propagate to the ``pyomo`` logger, which holds its handler.
ROS 2 ``launch`` (imported by its pytest plugins on any ROS machine, and by launch files) installs a
logger class whose loggers do not propagate; Pyomo's loggers created after that have no handler on
their path, and Pyomo's solver-output capture then asks ``logging.lastResort`` for
``sys.stderr.fileno()``, which fails where stderr is not a file (pytest's ``capsys``:
``io.UnsupportedOperation: fileno``). So once ``pyomo.environ`` is imported (it creates every Pyomo
logger), Pyomo's loggers get the ``propagate`` Pyomo configures; nothing else is touched.
"""
from __future__ import annotations

import importlib.abc
import logging
import sys


def restore_pyomo_logging() -> None:
    """Let every existing ``pyomo``/``pyomo.*`` logger propagate (Pyomo's own configuration)."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (name == "pyomo" or name.startswith("pyomo.")):
            logger.propagate = True


class _AfterPyomoImport(importlib.abc.MetaPathFinder):
    """Runs :func:`restore_pyomo_logging` right after ``pyomo.environ`` is executed, whoever imports it."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "pyomo.environ":
            return None
        others = [f for f in sys.meta_path if f is not self and hasattr(f, "find_spec")]
        spec = next((s for s in (f.find_spec(fullname, path, target) for f in others) if s is not None), None)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            restore_pyomo_logging()

        spec.loader.exec_module = exec_module  # this spec's own loader instance
        return spec


if "pyomo.environ" in sys.modules:
    restore_pyomo_logging()
elif not any(isinstance(f, _AfterPyomoImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterPyomoImport())
