# The README's two commands: `make serve` and `make test`. CI runs `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8080
DATA ?= snapshots

.PHONY: serve test lint typecheck pytest bench format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/backchannel serve --host $(HOST) --port $(PORT) --data-dir $(DATA)

lint: $(STAMP)
	$(BIN)/ruff check backchannel tests tools
	$(BIN)/ruff format --check backchannel tests tools

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python tools/bench.py

format: $(STAMP)
	$(BIN)/ruff format backchannel tests tools
	$(BIN)/ruff check --fix backchannel tests tools

clean:
	rm -rf $(VENV) build *.egg-info
