# The two commands of the README:
#   make demo  - set up (idempotent) and run the main job on the built-in default data
#   make test  - set up (idempotent) and run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test bench clean
setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m recnas demo

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The speed benchmarks are benchmarks/bench_*.py (each runs with no arguments). The other scripts in
# benchmarks/ are diagnostics over a finished run and take its folder as an argument (their docstrings
# say how), so they are not part of this loop.
bench: setup
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) data/cache runs
