"""Where the package's shipped files (config/, launch/) are: the one config locator.

From a source checkout (``PYTHONPATH=<repo>``, the pip-only set-up) they are the checkout's own
``config/`` and ``launch/``; after ``colcon build`` (or any install of setup.py) they are under the
package's share folder, found through the ament index, else ``<sys.prefix>/share/hiopt_ros``.
Every consumer (nodes' defaults, bringup, launcher, offline tools, tests) asks here, so nothing
depends on how many folders up from a module the config happens to be.
"""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "hiopt_ros"
#: the folder holding the importable packages hiopt_ros, sim and offline
IMPORT_ROOT = Path(__file__).resolve().parent.parent


def _is_source_tree(root: Path) -> bool:
    return (root / "package.xml").is_file() and (root / "config").is_dir()


@lru_cache(maxsize=1)
def share_dir() -> Path:
    """The folder holding config/ and launch/: the source tree, else the installed share folder."""
    if _is_source_tree(IMPORT_ROOT):
        return IMPORT_ROOT
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)))
    except Exception:  # not installed through colcon, or no ament_index_python
        pass
    candidates.append(Path(sys.prefix) / "share" / PACKAGE)
    for cand in candidates:
        if (cand / "config").is_dir():
            return cand
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} config folder: not in a source checkout ({IMPORT_ROOT}) and not installed "
        f"(ament index / {sys.prefix}/share/{PACKAGE}); run from the repository or `colcon build` the package")


def config_path(*parts: str) -> Path:
    """A path under the package's config/ folder, e.g. ``config_path("nav.yaml")``."""
    return share_dir().joinpath("config", *parts)


def package_path(path: str | Path) -> Path:
    """A file named in config/nav.yaml (``policy_checkpoint``, ``theta_file``): an absolute path as
    is, a relative one relative to the package's share folder — the repository root in a checkout —
    so ``config/policy/bilevel_learned.pt`` means the shipped file wherever the node runs from."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else share_dir() / path


def default_params_file() -> Path:
    """config/nav.yaml: the ROS parameters of every node, the course and the shared robot model."""
    return config_path("nav.yaml")
