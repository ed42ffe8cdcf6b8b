#!/usr/bin/env bash
# Create or reuse .venv/ at the repo root and install everything hiopt needs, in the right order.
# Idempotent: a stamp file keyed by this script's hash skips the work when nothing changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
stamp="$venv/.hiopt-bootstrap"
want="$(sha256sum "$root/tools/bootstrap.sh" | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
echo "[bootstrap] setting up $venv (first run takes a few minutes)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pipi() {  # pip install, without the machine's noisy "local index location ignored" warnings
  "$venv/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
  return "${PIPESTATUS[0]}"
}
pip=(pipi)
"${pip[@]}" --upgrade pip setuptools wheel
# 1. torch, pinned (CPU wheel on this machine kind); before anything that depends on torch
"${pip[@]}" torch==2.13.0
# 2. ROS 2 Kilted from PyPI wheels
"${pip[@]}" ros-rclpy ros-rmw-fastrtps-cpp ros-geometry-msgs ros-nav-msgs ros-std-msgs \
  ros-sensor-msgs ros-visualization-msgs ros-diagnostic-msgs ros-rosgraph-msgs ros-builtin-interfaces
# 3. acados, then the casadi this project pins over the vendored one (built for CPython 3.12)
"${pip[@]}" comma-deps-acados
"${pip[@]}" --force-reinstall --no-deps casadi==3.7.2
# 4. the rest
"${pip[@]}" "numpy<3" scipy matplotlib pyyaml tqdm pybullet==3.2.7 "gymnasium>=1.0,<2" \
  "stable-baselines3>=2.9,<3" pyomo pyscipopt highspy rosbags pytest pytest-timeout
# casadi must stay the pinned one even if something above pulled another
"$venv/bin/python" - <<'PY'
import casadi, torch
assert casadi.__version__ == "3.7.2", casadi.__version__
assert torch.__version__.startswith("2.13.0"), torch.__version__
PY
echo "$want" > "$stamp"
echo "[bootstrap] done" >&2
