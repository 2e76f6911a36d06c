# todo_service — every target is listed by `make help`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
export PYTHONDONTWRITEBYTECODE := 1

.DEFAULT_GOAL := help
.PHONY: help install run reload dev migrate seed token test lint sql-lint schema sql-plan bench bench-quick bench-openloop bench-compare bench-costs bench-floor bench-network docs-screenshot clean

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the pinned dependencies

run: $(STAMP) ## Serve with gunicorn (gunicorn.conf.py); embedded PostgreSQL unless DATABASE_URL is set
	@mkdir -p .data
	GUNICORN_PIDFILE=$${GUNICORN_PIDFILE:-.data/gunicorn.pid} $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

reload: ## Graceful reload of `make run` (HUP to the master in GUNICORN_PIDFILE, docs/scaling.md)
	@pidfile=$${GUNICORN_PIDFILE:-.data/gunicorn.pid}; [ -s "$$pidfile" ] || { echo "no gunicorn pid file at $$pidfile" >&2; exit 1; }; \
	  kill -HUP "$$(cat "$$pidfile")" && echo "reloading gunicorn $$(cat "$$pidfile")"

dev: $(STAMP) ## Migrate, then the Flask debug server with reload on 127.0.0.1:8000 (API_HOST as make run allows it)
	$(BIN)/flask --app wsgi:app check-exposure --host $${API_HOST:-127.0.0.1}
	$(BIN)/flask --app wsgi:app migrate
	$(BIN)/flask --app wsgi:app run --debug --host $${API_HOST:-127.0.0.1} --port $${API_PORT:-8000}

migrate: $(STAMP) ## Apply pending migrations
	$(BIN)/flask --app wsgi:app migrate

seed: $(STAMP) ## Demo data: make seed USERS=10 TASKS=20
	$(BIN)/flask --app wsgi:app seed --users $${USERS:-10} --tasks $${TASKS:-20}

token: $(STAMP) ## Print a 1-hour token for USER signed with AUTH_JWT_SECRET: make -s token USER=alice
	@[ "$(origin USER)" = "command line" ] || { echo "name the user: make -s token USER=alice" >&2; exit 2; }
	@$(BIN)/flask --app wsgi:app token "$(USER)"

# The API tests that run a second time with every connection through a real PgBouncer.
PGBOUNCER_TESTS := tests/test_tasks_api.py tests/test_validation.py tests/test_listing.py tests/test_listcache.py tests/test_errors.py \
	tests/test_paging.py \
	tests/test_http.py tests/test_integrity.py tests/test_migrate.py tests/test_startup.py tests/test_logging.py \
	tests/test_fuzz.py tests/test_conditional.py tests/test_idempotency.py tests/test_statement_timeout.py tests/test_quota.py tests/test_sync.py

# $(call debian,NAME): make sure a Debian package's program exists; as root, install it.
define debian
	@command -v $(1) >/dev/null || [ -x /usr/sbin/$(1) ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing the Debian package $(1)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
	  else echo "$(1) is not installed; install it with: sudo apt-get install $(1)" >&2; exit 1; fi; }
endef

test: $(STAMP) ## Every test (embedded PostgreSQL or TEST_DATABASE_URL); the API tests again with auth on, via PgBouncer, via HAProxy
	$(call debian,pgbouncer)
	$(call debian,haproxy)
	$(call debian,redis-server)
	$(call debian,chromium)
	$(BIN)/pytest
	TEST_THROUGH_BALANCER=1 $(BIN)/pytest $(PGBOUNCER_TESTS)
	TEST_AUTH=1 $(BIN)/pytest $(PGBOUNCER_TESTS)
	TEST_THROUGH_PGBOUNCER=1 $(BIN)/pytest $(PGBOUNCER_TESTS)
	TEST_THROUGH_PGBOUNCER=1 TEST_AUTH=1 $(BIN)/pytest $(PGBOUNCER_TESTS)

lint: $(STAMP) ## ruff, sqlfluff + squawk, hadolint
	$(BIN)/ruff check .
	$(MAKE) --no-print-directory sql-lint
	$(BIN)/hadolint Dockerfile

sql-lint: $(STAMP) ## sqlfluff on sql/, squawk on the migrations
	$(BIN)/sqlfluff lint sql/
	$(BIN)/squawk --assume-in-transaction sql/migrations/*.sql

schema: $(STAMP) ## Regenerate sql/schema.sql from the migrations
	$(BIN)/python -m todo_service.schemadump sql/schema.sql

docs-screenshot: $(STAMP) ## Render /docs in Chromium (the browser test) and keep the picture as docs/api-docs.png
	$(call debian,chromium)
	$(BIN)/pytest -q tests/test_browser.py -k test_docs_authorize_box_takes_a_token_for_try_it_out
	cp .data/test-logs/docs.png docs/api-docs.png

clean: ## Remove the venv, caches and local database data
	rm -rf $(VENV) .data .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

sql-plan: $(STAMP) ## EXPLAIN (ANALYZE, BUFFERS) of every API statement on 1,000,000 rows
	$(BIN)/python -m todo_service.sqlplan

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## Load benchmark, ~6 min: wrk on every scenario, report in docs/performance.md (BENCH_ARGS=...)
	$(call debian,wrk)
	$(call debian,redis-server)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP) ## One-minute smoke run of the load benchmark (all scenarios, short)
	$(call debian,wrk)
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

bench-openloop: $(BENCH_STAMP) ## Latency at 50% and 80% of each scenario's peak, offered at a fixed rate (open loop)
	$(call debian,wrk)
	$(BIN)/python -m bench.openloop $(BENCH_ARGS)

bench-compare: $(BENCH_STAMP) ## p50/p99 against offered rate, the service beside a FastAPI + SQLModel build (~10 min)
	$(call debian,wrk)
	$(BIN)/python -m bench.compare $(BENCH_ARGS)

bench-costs: $(BENCH_STAMP) ## What metrics and rate limits cost get and mix: interleaved rounds, medians (~25 min)
	$(call debian,wrk)
	$(call debian,redis-server)
	$(BIN)/python -m bench.costs $(BENCH_ARGS)

bench-floor: $(BENCH_STAMP) ## CPU per get beside the floor of its stack: bare WSGI, bare Flask, Flask + one psycopg read (~6 min)
	$(call debian,wrk)
	$(BIN)/python -m bench.floor $(BENCH_ARGS)

bench-network: $(BENCH_STAMP) ## Every scenario at 0/1/5 ms to the database, direct and via PgBouncer (BENCH_ARGS="--duration 10")
	$(call debian,wrk)
	$(call debian,pgbouncer)
	$(BIN)/python -m bench.network $(BENCH_ARGS)
