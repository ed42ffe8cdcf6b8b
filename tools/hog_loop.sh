#!/usr/bin/env bash
# `make test` N times in a row on a fresh clone of this repository at REV, next to K busy processes
# (CI shares 2 cores with other work). One line per run in OUT (and on stdout).
#   usage: tools/hog_loop.sh [REV=HEAD] [N=10] [K=2] [OUT=results/hog_loop.txt]
set -u
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rev="${1:-HEAD}"; runs="${2:-10}"; hogs="${3:-2}"; out="${4:-$repo/results/hog_loop.txt}"
rev="$(git -C "$repo" rev-parse "$rev")" || exit 2
work="$(mktemp -d)"; clone="$work/hiopt"
git clone -q "$repo" "$clone" && git -C "$clone" checkout -q "$rev" || exit 2
mkdir -p "$(dirname "$out")"
log() { echo "$*" | tee -a "$out"; }
log "commit $(git -C "$clone" rev-parse --short HEAD): $runs x make test next to $hogs busy processes, started $(date -u +%FT%TZ)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$clone"' EXIT   # the logs stay in $work
make -C "$clone" venv > "$work/venv.log" 2>&1 || { log "make venv failed: $work/venv.log"; exit 2; }
for _ in $(seq "$hogs"); do "$clone/.venv/bin/python" -c "while True: pass" & pids+=($!); done
failed=0
for i in $(seq "$runs"); do
  t0=$SECONDS
  make -C "$clone" test > "$work/run$i.log" 2>&1; rc=$?
  [ $rc -eq 0 ] || failed=$((failed + 1))
  log "run $i: exit $rc, $((SECONDS - t0)) s, load $(cut -d' ' -f1-3 /proc/loadavg): $(grep -E "^=+ .*(passed|failed|error)" "$work/run$i.log" | tail -n 1)"
done
log "ended $(date -u +%FT%TZ): $((runs - failed)) of $runs passed (logs: $work)"
[ $failed -eq 0 ]
