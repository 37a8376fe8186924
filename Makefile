# One command to serve the portal with demo data (`make run`), one to test it (`make test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := wsgi

.PHONY: install run serve test lint format bench bench-pages bench-client screenshots clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## Set up, migrate, load the demo data, and serve on http://$(HOST):$(PORT) with one worker
run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask demo
	@echo "Emails (password reset, verification and invitation links) are written to this console while MAIL_SERVER is unset."
	@echo "One worker (flask worker: outbound webhooks, expiry and other scheduled jobs) runs beside the server; Ctrl+C stops both."
	@$(BIN)/flask worker & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT; trap 'exit 130' INT TERM; \
	$(BIN)/flask run --host $(HOST) --port $(PORT)

## Serve with gunicorn (production-like)
serve: install
	$(BIN)/flask db upgrade
	$(BIN)/gunicorn --workers 4 --bind $(HOST):$(PORT) wsgi:app

## The whole test suite (SQLite and PostgreSQL; Chromium end-to-end where available)
test: install
	$(BIN)/pytest -n auto

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Benchmarks (PostgreSQL): deducts over HTTP vs raw SQL; pages with 1M ledger rows; client
bench: install
	$(BIN)/python -m tests.benchmarks.bench_deduct

bench-pages: install
	$(BIN)/python -m tests.benchmarks.bench_pages

bench-client: install
	$(BIN)/python -m tests.benchmarks.bench_client

## PNG screenshots of the main pages at desktop and phone widths (needs chromium)
screenshots: install
	$(BIN)/python -m tests.e2e.screenshots --out screenshots

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache
