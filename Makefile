# One command to serve the portal with demo data (`make run`), one to test it (`make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := wsgi

.PHONY: install run serve test lint format bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## Set up, migrate, load the demo data, and serve on http://$(HOST):$(PORT)
run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask demo
	$(BIN)/flask run --host $(HOST) --port $(PORT)

## Serve with gunicorn (production-like)
serve: install
	$(BIN)/flask db upgrade
	$(BIN)/gunicorn --workers 4 --bind $(HOST):$(PORT) wsgi:app

## The whole test suite (SQLite and PostgreSQL; Chromium end-to-end where available)
test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python -m tests.benchmarks.bench_deduct

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
