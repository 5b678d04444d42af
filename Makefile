# The README's two commands: `make serve` and `make test`. CI runs `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8080
DATA ?= snapshots

.PHONY: serve test lint typecheck pytest bench format clean browser

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The published backchannel-mcp 0.1.2 needs mcp<2 and we need mcp 2.x: it gets its
# own venv for tests/compat/test_mcp.py (the pin and its reason: that requirements file).
MCP1 := .venv-mcp1
MCP1_STAMP := $(MCP1)/.installed-stamp

$(MCP1_STAMP): tests/compat/requirements-mcp1.txt
	test -x $(MCP1)/bin/python || $(PYTHON) -m venv $(MCP1)
	$(MCP1)/bin/python -m pip install -q -r tests/compat/requirements-mcp1.txt
	touch $(MCP1_STAMP)

serve: $(STAMP)
	$(BIN)/backchannel serve --host $(HOST) --port $(PORT) --data-dir $(DATA)

lint: $(STAMP)
	$(BIN)/ruff check backchannel tests tools
	$(BIN)/ruff format --check backchannel tests tools

typecheck: $(STAMP)
	$(BIN)/mypy

# Headless Chromium and its driver for tests/http/test_pages.py (Debian packages;
# CI starts from a clean machine as root).
browser:
	test -x /usr/bin/chromium && test -x /usr/bin/chromedriver || { \
		apt-get update && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; }

pytest: $(STAMP) browser $(MCP1_STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python tools/bench.py

format: $(STAMP)
	$(BIN)/ruff format backchannel tests tools
	$(BIN)/ruff check --fix backchannel tests tools

clean:
	rm -rf $(VENV) $(MCP1) build *.egg-info
