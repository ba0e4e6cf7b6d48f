# Everything a newcomer needs: `make demo` and `make test` (see README.md).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test bench demo clean

# Recreate the venv only when it is missing or pyproject.toml changed since it was built.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

test: venv
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	$(BIN)/python scripts/bench_solvers.py --out bench_out
	$(BIN)/python scripts/bench_scaling.py --out bench_out
	$(BIN)/python scripts/bench_odometry.py --accuracy --out bench_out/odometry

demo: venv
	$(BIN)/python -m slam demo

clean:
	rm -rf $(VENV) bench_out runs .pytest_cache
