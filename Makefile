# Quick start: `make demo` (train the demo model) and `make test` (lint + test suite).
# Both create ./.venv on first use and install the package into it (editable, with the dev extra).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test test-fast lint install clean

$(BIN)/basicsr: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $@

install: $(BIN)/basicsr

# The demo network is tiny: one thread is about as fast as two and does not stall when other jobs share the CPU.
demo: install
	$(BIN)/python datasets/prepare_demo.py  # the demo photos ship with scikit-image: no download
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/basicsr train -opt options/Demo.yml

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest

# About a minute: everything but the tests marked slow (subprocesses, training runs, tests/e2e). CI runs `make test`.
test-fast: install
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -m "not slow" -q

clean:
	rm -rf $(VENV) experiments/debug_* .pytest_cache .ruff_cache
