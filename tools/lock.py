"""Regenerate tools/requirements.lock from tools/requirements.in (exact versions + SHA-256 hashes).

    .venv/bin/python tools/lock.py                      # keep existing pins, resolve what changed
    .venv/bin/python tools/lock.py --upgrade-package X  # let X (and what it needs) move
    .venv/bin/python tools/lock.py --upgrade            # re-resolve everything
    .venv/bin/python tools/lock.py --check              # exit 1 if the lock is stale w.r.t. .in

Resolution is pip's own (`pip install --dry-run --ignore-installed --report`), run by the Python
that executes this script, so run it with the venv's CPython 3.11 on Linux x86_64: the lock is
only valid for that interpreter and platform (its header says which; the bootstrap checks it).
Every package of the environment is written as one line `name==version --hash=sha256:...`, the
format `pip install --require-hashes --no-deps -r` installs without resolving anything again.
Standard library only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REQUIREMENTS_IN = TOOLS / "requirements.in"
LOCK = TOOLS / "requirements.lock"
_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s+--hash=sha256:([0-9a-f]{64})\s*$")


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def target_tag() -> str:
    """The interpreter and platform a lock is valid for, e.g. 'cp311-linux-x86_64'."""
    return f"cp{sys.version_info[0]}{sys.version_info[1]}-{sysconfig.get_platform()}"


def read_lock(path: Path = LOCK) -> tuple[dict[str, tuple[str, str, str]], dict[str, str]]:
    """({canonical name: (name, version, sha256)}, header fields such as 'target' and 'inputs-sha256')."""
    pins: dict[str, tuple[str, str, str]] = {}
    header: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = re.match(r"#\s*([a-z0-9-]+):\s*(\S+)\s*$", line)
            if m:
                header[m.group(1)] = m.group(2)
            continue
        m = _LINE.match(line)
        if not m:
            raise SystemExit(f"{path}:{n}: not a `name==version --hash=sha256:<64 hex>` line: {line!r}")
        pins[canonical(m.group(1))] = (m.group(1), m.group(2), m.group(3))
    return pins, header


def inputs_sha256() -> str:
    return hashlib.sha256(REQUIREMENTS_IN.read_bytes()).hexdigest()[:16]


def _sha256_of_url(url: str) -> str:
    h = hashlib.sha256()
    if url.startswith("file:"):
        with open(urllib.request.url2pathname(urllib.parse.urlparse(url).path), "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    raise SystemExit(f"the index gave no sha256 for {url}; cannot lock it")


def resolve(constraints: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """[(name, version, sha256, url)] of the environment pip resolves for requirements.in."""
    with tempfile.TemporaryDirectory(prefix="hiopt-lock-") as tmp:
        report = Path(tmp) / "report.json"
        cons = Path(tmp) / "constraints.txt"
        cons.write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())))
        cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", "--dry-run",
               "--ignore-installed", "--report", str(report), "-r", str(REQUIREMENTS_IN), "-c", str(cons)]
        print("resolving:", " ".join(cmd[3:]), file=sys.stderr)
        proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
        noise = "is ignored: it is neither a file nor a directory"
        err = "\n".join(line for line in proc.stderr.splitlines() if noise not in line)
        if proc.returncode != 0:
            hint = ("\nan existing pin conflicts with requirements.in: rerun with --upgrade-package NAME "
                    "or --upgrade" if constraints else "")
            raise SystemExit(f"pip could not resolve {REQUIREMENTS_IN}:\n{err}{hint}")
        data = json.loads(report.read_text())
    out = []
    for item in data["install"]:
        meta, info = item["metadata"], item["download_info"]
        hashes = info.get("archive_info", {}).get("hashes", {})
        sha = hashes.get("sha256") or _sha256_of_url(info["url"])
        out.append((meta["name"], meta["version"], sha, info["url"]))
    return sorted(out, key=lambda r: canonical(r[0]))


def write_lock(rows: list[tuple[str, str, str, str]], path: Path = LOCK) -> None:
    sdists = [n for n, _, _, url in rows if not url.split("#")[0].endswith(".whl")]
    lines = [
        "# hiopt: exact versions and SHA-256 of every Python package tools/bootstrap.sh installs.",
        "# GENERATED by `.venv/bin/python tools/lock.py` from tools/requirements.in: do not edit by hand.",
        "# Installed with `pip install --require-hashes --no-deps --no-build-isolation -r` (nothing is",
        "# resolved again); tools/lockcheck.py verifies the venv against it.",
        f"# sdists (built locally with the locked setuptools): {', '.join(sdists) or 'none'}",
        f"# target: {target_tag()}",
        f"# inputs-sha256: {inputs_sha256()}",
        "",
    ]
    lines += [f"{name}=={version} --hash=sha256:{sha}" for name, version, sha, _ in rows]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python tools/lock.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--upgrade", action="store_true", help="ignore the existing pins and re-resolve everything")
    ap.add_argument("--upgrade-package", action="append", default=[], metavar="NAME",
                    help="drop this package's pin before resolving (repeatable)")
    ap.add_argument("--check", action="store_true",
                    help="only check that the lock was generated from the current requirements.in for this "
                         "interpreter; exit 1 if not")
    args = ap.parse_args(argv)
    old: dict[str, tuple[str, str, str]] = {}
    header: dict[str, str] = {}
    if LOCK.exists():
        old, header = read_lock()
    if args.check:
        problems = []
        if header.get("inputs-sha256") != inputs_sha256():
            problems.append(f"{REQUIREMENTS_IN.name} changed since the lock was generated")
        if header.get("target") != target_tag():
            problems.append(f"the lock is for {header.get('target')}, this interpreter is {target_tag()}")
        if problems:
            print("requirements.lock is stale: " + "; ".join(problems) + "; run .venv/bin/python tools/lock.py",
                  file=sys.stderr)
            return 1
        print(f"{LOCK.relative_to(TOOLS.parent)} is up to date ({len(old)} packages, {header['target']})")
        return 0
    if header and header.get("target") != target_tag():
        raise SystemExit(f"the existing lock is for {header.get('target')}, this interpreter is {target_tag()}; "
                         "run this script with the venv's CPython 3.11 (.venv/bin/python tools/lock.py)")
    drop = {canonical(n) for n in args.upgrade_package}
    constraints = {} if args.upgrade else {v[0]: v[1] for k, v in old.items() if k not in drop}
    rows = resolve(constraints)
    write_lock(rows)
    new = {canonical(n): (n, v, s) for n, v, s, _ in rows}
    changed = [f"{new[k][0]} {old[k][1] if k in old else '-'} -> {new[k][1]}" for k in sorted(new)
               if k not in old or old[k][1] != new[k][1]]
    removed = [f"{old[k][0]} {old[k][1]} -> -" for k in sorted(old) if k not in new]
    print(f"wrote {LOCK.relative_to(TOOLS.parent)}: {len(rows)} packages for {target_tag()}")
    for line in changed + removed:
        print("  " + line)
    if not (changed or removed):
        print("  no version changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
