# todo_service — every target is listed by `make help`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.DEFAULT_GOAL := help
.PHONY: help install run dev migrate seed test test-fast lint sql-lint schema sql-plan bench bench-quick clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the pinned dependencies

run: $(STAMP) ## Serve with gunicorn (gunicorn.conf.py); embedded PostgreSQL unless DATABASE_URL is set
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

dev: $(STAMP) ## Flask debug server with reload on 127.0.0.1:8000
	$(BIN)/flask --app wsgi:app run --debug --host $${API_HOST:-127.0.0.1} --port $${API_PORT:-8000}

migrate: $(STAMP) ## Apply pending migrations
	$(BIN)/flask --app wsgi:app migrate

seed: $(STAMP) ## Demo data: make seed USERS=10 TASKS=20
	$(BIN)/flask --app wsgi:app seed --users $${USERS:-10} --tasks $${TASKS:-20}

test: $(STAMP) ## Run every test (embedded PostgreSQL, or TEST_DATABASE_URL)
	$(BIN)/pytest

lint: $(STAMP) ## ruff, sqlfluff + squawk, hadolint
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory sql-lint
	$(BIN)/hadolint Dockerfile

sql-lint: $(STAMP) ## sqlfluff on sql/, squawk on the migrations
	$(BIN)/sqlfluff lint sql/
	$(BIN)/squawk --assume-in-transaction sql/migrations/*.sql

schema: $(STAMP) ## Regenerate sql/schema.sql from the migrations
	$(BIN)/python -m todo_service.schemadump sql/schema.sql

clean: ## Remove the venv, caches and local database data
	rm -rf $(VENV) .data .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

sql-plan: $(STAMP) ## EXPLAIN (ANALYZE, BUFFERS) of every API statement on 1,000,000 rows
	$(BIN)/python -m todo_service.sqlplan
