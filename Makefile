# The two commands a new machine needs:  `make demo`  and  `make test`.
# Everything else here is what those two are made of.

VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Parallel test processes: most tests wait on the processes they start, not on the CPU.
TEST_WORKERS ?= 4

.PHONY: demo test lint typecheck pytest clean

$(STAMP): pyproject.toml
	@PY=$$(scripts/find-python) && echo "using $$PY" && "$$PY" -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## demo: start both banks, the promise store and a worker locally, and run transfers (no Docker)
demo: $(STAMP)
	$(BIN)/crossbank demo

## test: lint, type-check, then the whole test suite
test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --durations=15 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) data .mypy_cache .ruff_cache .pytest_cache
