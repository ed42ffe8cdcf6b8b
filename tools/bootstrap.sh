#!/usr/bin/env bash
# Create or reuse .venv/ at the repo root and install exactly tools/requirements.lock into it.
# Idempotent: a stamp keyed by the hashes of this script, the lock and the lock checker skips the
# work when nothing changed. The lock pins every package (dependencies included) to one version
# and one SHA-256, so a fresh install next month builds the same environment; refresh it with
# `.venv/bin/python tools/lock.py` (see tools/requirements.in).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
lock="$root/tools/requirements.lock"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
stamp="$venv/.hiopt-bootstrap"
want="$(cat "$root/tools/bootstrap.sh" "$lock" "$root/tools/lockcheck.py" "$root/tools/lock.py" \
  | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
t0=$SECONDS
echo "[bootstrap] setting up $venv from tools/requirements.lock (first run takes a few minutes)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
# the lock holds cp311 Linux x86_64 wheels: say so instead of failing on a hash or tag mismatch
target="$(sed -n 's/^# target: //p' "$lock")"
have="$("$venv/bin/python" -c 'import sys, sysconfig; print(f"cp{sys.version_info[0]}{sys.version_info[1]}-{sysconfig.get_platform()}")')"
if [ "$target" != "$have" ]; then
  echo "[bootstrap] error: tools/requirements.lock is for $target but $venv/bin/python is $have;" \
    "install CPython 3.11 (PYTHON=/path/to/python3.11), delete .venv/ and rerun" >&2
  exit 2
fi
pipi() {  # pip install, without the machine's noisy "local index location ignored" warnings
  "$venv/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
  return "${PIPESTATUS[0]}"
}
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# 1. the locked pip/setuptools/wheel first: they install (and build empy, the one sdist) the rest
grep -E '^(pip|setuptools|wheel)==' "$lock" > "$tmp/tools.txt"
pipi --require-hashes --no-deps -r "$tmp/tools.txt"
# 2. everything, exactly as locked: hashes checked, no dependency resolution, no downloads of
#    unlocked build tools (the sdist is built with the locked setuptools). torch is pinned to the
#    CPU build, so nothing pulls CUDA packages.
pipi --require-hashes --no-deps --no-build-isolation -r "$lock"
# 3. comma-deps-acados vendors a casadi built for CPython 3.12 over the `casadi` package: put the
#    locked casadi back last
grep -E '^casadi==' "$lock" > "$tmp/casadi.txt"
pipi --require-hashes --no-deps --force-reinstall -r "$tmp/casadi.txt"
# 4. nothing more, nothing less: drop distributions the lock does not list (an older lock's),
#    then verify versions and casadi's files against the lock, and pip's own consistency check
"$venv/bin/python" "$root/tools/lockcheck.py" --sync
"$venv/bin/python" -m pip check --disable-pip-version-check >&2
"$venv/bin/python" - <<'PY'
import casadi, torch
assert casadi.__version__ == "3.7.2", casadi.__version__
assert torch.__version__.startswith("2.13.0"), torch.__version__
PY
echo "$want" > "$stamp"
echo "[bootstrap] done in $((SECONDS - t0)) s" >&2
