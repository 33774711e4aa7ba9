# The two commands a newcomer needs: `make run` and `make test`. Both install first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint bench clean

$(STAMP): setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (set PYTHON=... to another 3.11+)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/snowflake-tracker serve $(ARGS)

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# ruff reads no setup.cfg, and pyproject.toml holds only [build-system]: its settings live here.
RUFF_OPTS := --line-length 100 --target-version py311
RUFF_RULES := --select E,F,W,I,B,UP,SIM,RUF,N,PLE,PLW --ignore PLW0603,N818
LINTED := snowflake_tracker tests benchmarks

lint: $(STAMP)
	$(BIN)/ruff check $(RUFF_OPTS) $(RUFF_RULES) $(LINTED)
	$(BIN)/ruff format --check $(RUFF_OPTS) $(LINTED)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_core.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
