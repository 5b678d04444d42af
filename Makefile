# The README's two commands: `make serve` and `make test`. CI runs `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8080
DATA ?= snapshots

.PHONY: serve test lint typecheck pytest pytest-stock bench format clean browser

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

# The HTTP and compat tests once more on stock hypercorn (BACKCHANNEL_HTTP_TUNING=off,
# about 100 s); the keep-alive tests that install hypercorn_recycle themselves are left out,
# and so is the 45 s crowd of idle and slow connections (stock hypercorn's own keep-alive
# timer closes slow headers; the tuned path is what needed the fix).
STOCK_TESTS := tests/http/test_messages.py tests/http/test_claims.py tests/http/test_longpoll.py \
	tests/http/test_connections.py tests/http/test_headers.py tests/http/test_idempotency.py \
	tests/http/test_keepalive.py tests/http/test_http_tuning.py tests/http/test_backup_live.py \
	tests/http/test_hostile_connections.py tests/compat
STOCK_DESELECT := not hypercorn_recycles and not chunked_body_the_app and not beyond_the_drain \
	and not idle_crowds

pytest-stock: $(STAMP) $(MCP1_STAMP)
	BACKCHANNEL_HTTP_TUNING=off $(BIN)/python -m pytest -q $(STOCK_TESTS) -k "$(STOCK_DESELECT)"

test: lint typecheck pytest pytest-stock

bench: $(STAMP)
	$(BIN)/python tools/bench.py

format: $(STAMP)
	$(BIN)/ruff format backchannel tests tools
	$(BIN)/ruff check --fix backchannel tests tools

clean:
	rm -rf $(VENV) $(MCP1) build *.egg-info
