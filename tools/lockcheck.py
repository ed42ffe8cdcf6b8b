"""Check (or make) the running venv equal to tools/requirements.lock.

    .venv/bin/python tools/lockcheck.py          # exit 1 with one line per difference
    .venv/bin/python tools/lockcheck.py --sync   # first uninstall distributions the lock does not list

"Equal" means: every locked distribution is installed at exactly the locked version, no other
top-level distribution is installed, and casadi's files are casadi's own (comma-deps-acados ships a
casadi of its own over the same folder; the bootstrap reinstalls the locked one last).

The ROS 2 wheels (ros-rclpy, ros-std-msgs, ...) carry the metadata of the packages they wrap
(rclpy, std_msgs, ...) inside their own RECORD. Those nested distributions are part of the locked
wheel, not separate installs, and are ignored here (uninstalling one would delete the wheel's files).
Used by tools/bootstrap.sh and test/test_deps.py. Standard library only.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lock import LOCK, canonical, read_lock, target_tag

#: distributions whose installed files must match their own RECORD hashes (name -> why)
VERIFY_FILES = {"casadi": "comma-deps-acados overwrites it with a casadi built for CPython 3.12"}


def installed(path: list[str] | None = None) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """({canonical name: (name, version)} of top-level distributions, {nested name: owner})."""
    dists = list(md.distributions(path=path) if path is not None else md.distributions())
    # a distribution is nested when its metadata folder is a file of another distribution's RECORD
    owner_of_folder: dict[str, str] = {}
    for d in dists:
        for f in d.files or ():
            top = f.parts[0] if f.parts else ""
            if top.endswith((".dist-info", ".egg-info")) and len(f.parts) > 1:
                owner_of_folder.setdefault(top, d.metadata["Name"])
    top_level: dict[str, tuple[str, str]] = {}
    nested: dict[str, str] = {}
    for d in dists:
        name = d.metadata["Name"]
        folder = Path(str(getattr(d, "_path", ""))).name
        owner = owner_of_folder.get(folder)
        if owner is not None and canonical(owner) != canonical(name):
            nested[canonical(name)] = owner
        else:
            top_level.setdefault(canonical(name), (name, d.version))
    return top_level, nested


def record_mismatches(dist_name: str) -> list[str]:
    """Files of `dist_name` whose content differs from the sha256 its RECORD lists."""
    dist = md.distribution(dist_name)
    bad = []
    for f in dist.files or ():
        if f.hash is None or f.hash.mode != "sha256":
            continue
        path = Path(str(f.locate()))
        if not path.is_file():
            bad.append(f"{f} (missing)")
            continue
        digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
        if digest != f.hash.value:
            bad.append(str(f))
    return bad


def differences(lock_path: Path = LOCK, site: list[str] | None = None) -> list[str]:
    """One line per way the environment differs from the lock (empty: identical). `site`: folders
    to look for distributions in instead of sys.path (tests)."""
    pins, header = read_lock(lock_path)
    problems = []
    if header.get("target") != target_tag():
        problems.append(f"the lock is for {header.get('target')}, this interpreter is {target_tag()}")
    have, _ = installed(site)
    for key, (name, version, _) in sorted(pins.items()):
        if key not in have:
            problems.append(f"{name}=={version} is locked but not installed")
        elif have[key][1] != version:
            problems.append(f"{name} {have[key][1]} is installed, the lock says {version}")
    for key, (name, version) in sorted(have.items()):
        if key not in pins:
            problems.append(f"{name} {version} is installed but not in the lock")
    for name, why in VERIFY_FILES.items():
        if canonical(name) in have and site is None:
            bad = record_mismatches(name)
            if bad:
                problems.append(f"{len(bad)} file(s) of {name} differ from its RECORD ({why}), e.g. {bad[0]}")
    return problems


def sync(lock_path: Path = LOCK) -> list[str]:
    """Uninstall top-level distributions the lock does not list; returns their names."""
    pins, _ = read_lock(lock_path)
    have, _ = installed()
    extra = [name for key, (name, _) in sorted(have.items()) if key not in pins]
    if extra:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--disable-pip-version-check", "-y", "-q", *extra],
                       check=True)
    return extra


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/lockcheck.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sync", action="store_true", help="uninstall distributions that are not in the lock first")
    ap.add_argument("--lock", type=Path, default=LOCK, help="lock file (default tools/requirements.lock)")
    args = ap.parse_args(argv)
    if args.sync:
        removed = sync(args.lock)
        if removed:
            print(f"[lockcheck] uninstalled (not in the lock): {', '.join(removed)}", file=sys.stderr)
    problems = differences(args.lock)
    if problems:
        for p in problems:
            print(f"[lockcheck] {p}", file=sys.stderr)
        print(f"[lockcheck] the venv at {sys.prefix} differs from {args.lock} in {len(problems)} way(s); "
              "run `bash tools/bootstrap.sh` (or delete .venv/ and run it)", file=sys.stderr)
        return 1
    pins, _ = read_lock(args.lock)
    print(f"[lockcheck] {sys.prefix} matches {args.lock.name}: {len(pins)} packages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
