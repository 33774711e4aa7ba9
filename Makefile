# The two commands a newcomer needs: `make run` and `make test`. Both install first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Debian packages some tests and benchmarks drive: faketime (a clock set back), prometheus
# (promtool and a real scraping server), wrk (the load generator).
SYSTEM_TOOLS := faketime:faketime promtool:prometheus prometheus:prometheus wrk:wrk

.PHONY: install system-deps run test lint bench clean

$(STAMP): setup.cfg pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (set PYTHON=... to another 3.11+)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,fast]'
	touch $(STAMP)

install: $(STAMP)

# Installs the missing Debian packages when it can (root, or sudo without a password);
# otherwise it says which tests will be skipped. CI runs as root, so there they install.
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
		command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -z "$${missing// /}" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	else echo "note: install$$missing (Debian packages) to run every test; tests needing them skip"; exit 0; fi; \
	echo "installing Debian packages:$$missing"; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null

run: $(STAMP)
	$(BIN)/snowflake-tracker serve $(ARGS)

test: $(STAMP) system-deps
	$(BIN)/pytest $(PYTEST_ARGS)

# ruff reads no setup.cfg, and pyproject.toml holds only [build-system]: its settings live here.
RUFF_OPTS := --line-length 100 --target-version py311
RUFF_RULES := --select E,F,W,I,B,UP,SIM,RUF,N,PLE,PLW --ignore PLW0603,N818
LINTED := snowflake_tracker tests benchmarks

lint: $(STAMP)
	$(BIN)/ruff check $(RUFF_OPTS) $(RUFF_RULES) $(LINTED)
	$(BIN)/ruff format --check $(RUFF_OPTS) $(LINTED)
	$(BIN)/mypy

# The whole benchmark suite (benchmarks/README.md); BENCH_ARGS=--quick for a short smoke run.
# wrk comes from system-deps; the bench extra (matplotlib, py-spy) into the virtual environment.
bench: $(STAMP) system-deps
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +
