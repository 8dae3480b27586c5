# Two commands on a fresh machine with python3 and make:
#   make demo   - collector on ./govtrace.duckdb fed by a demo fleet of agents, plus the dashboard
#   make test   - the whole test suite (installs what it needs, Chromium included)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install browser lint bench docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/govtrace demo --dashboard

# Debian's Chromium for the browser test of the dashboard; installed once, as the README says.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; fi; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

docs: $(STAMP)
	$(BIN)/python -m govtrace.collector.cli_reference > docs/cli.md

bench: $(STAMP)
	$(BIN)/govtrace bench ingest

clean:
	rm -rf $(VENV) govtrace.duckdb govtrace.duckdb.wal govtrace.duckdb.keys govtrace.duckdb.intake .pytest_cache
