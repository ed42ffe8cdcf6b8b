# hiopt — every target creates/reuses .venv/ (tools/bootstrap.sh) before it runs.
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)
export PYTHONUNBUFFERED := 1

.PHONY: help venv nav nav-expert test test-fast bench loop demos fit bench-fit clean-cache docs lint

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

venv:  ## create/refresh .venv/ with everything hiopt needs
	@bash tools/bootstrap.sh

nav: venv  ## main job: sim + planner + FOP controller as ROS 2 processes, headless, on the default course
	$(PY) -m hiopt_ros.launcher $(ARGS)

nav-expert: venv  ## same course driven by the MPC expert (records a demonstration bag)
	$(PY) -m hiopt_ros.launcher --expert $(ARGS)

test: venv  ## the test suite
	$(PY) -m pytest $(ARGS)

# the one definition of the fast unit subset (README, docs/testing.md and test/conftest.py point here)
FAST_TESTS := not slow and not integration and not ros
test-fast: venv  ## the fast unit subset: no fits, no node processes, no DDS
	$(PY) -m pytest -m "$(FAST_TESTS)" $(ARGS)

lint: venv  ## ruff (E, W, F, I; 120 columns; ruff.toml) over the whole tree
	$(PY) -m ruff check . $(ARGS)

bench: venv  ## FOP / MPC solve-time benchmark vs CasADi + IPOPT (median, p99)
	$(PY) -m hiopt_ros.bench --json results/bench.json --markdown results/bench.md $(ARGS)

loop: venv  ## pure-Python closed loop (no ROS, no physics): MPC and bi-level FOP
	$(PY) -m sim.kinematic_loop --plot results/kinematic_loop.png $(ARGS)

demos: venv  ## record expert demonstrations on random courses into a bag
	$(PY) -m offline.demos --out results/demos.mcap $(ARGS)

fit: venv  ## fit θ from demonstration bags (BAGS=...)
	$(PY) -m offline.fit $(BAGS) --out config/theta/robot.yaml $(ARGS)

bench-fit: venv  ## inverse-optimization scaling benchmark (global vs scalable)
	$(PY) -m offline.bench_fit --markdown results/bench_fit.md $(ARGS)

docs: venv  ## the documentation site (docs/, mkdocs.yml) built with --strict into site/
	$(PY) -m mkdocs build --strict --site-dir site

clean-cache:  ## delete generated acados solvers (they are rebuilt on demand)
	rm -rf "$${HIOPT_CACHE_DIR:-$${XDG_CACHE_HOME:-$$HOME/.cache}/hiopt}/acados"
