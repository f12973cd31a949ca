# Etter backend. The two commands: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000
# pytest-xdist workers for the PostgreSQL run; each starts its own PostgreSQL and Redis.
TEST_WORKERS ?= 2
# The test targets keep Python's bytecode caches (git-ignored) even where the environment says
# PYTHONDONTWRITEBYTECODE (as CI does): pytest then rewrites each test module's asserts once
# per run, not once per worker and pass, and subprocesses load the app compiled.
TEST_ENV := PYTHONDONTWRITEBYTECODE=

# (helpers' targets have their own .PHONY lines beside them)
.PHONY: test-observability bench-metrics
.PHONY: help install run serve migrate seed test test-deps test-postgres test-embedded lint format clean bench-db bench-middleware bench-cache bench-deps bench-http bandit audit test-faults

help:
	@echo "make run     serve Etter on http://$(HOST):$(PORT) (embedded SQLite + demo data unless configured)"
	@echo "make test    lint, then the whole suite on throwaway PostgreSQL and Redis, then the embedded run"
	@echo "make lint | format | migrate | seed | clean"

# uv installs the requirements (several times faster than pip); pip only bootstraps uv.
# --compile-bytecode: uv, unlike pip, leaves the libraries uncompiled, and where
# PYTHONDONTWRITEBYTECODE is set (as on CI) every process would compile the app's imports
# afresh: 7 s instead of 2.7 for `import settings.server`, paid by each of the test run's
# workers and subprocesses. Compiling once at install costs about 11 s.
UV_VERSION := 0.13.9

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate

seed: migrate
	$(BIN)/python manage.py seed --scale demo

# Migrates, seeds the demo data when the database is empty, prints the logins, serves.
# --no-proxy-headers: X-Forwarded-For is honoured by our own middleware, from TRUSTED_PROXIES only.
run: migrate
	$(BIN)/python manage.py seed --scale demo --if-empty
	$(BIN)/python manage.py demo-logins
	$(BIN)/uvicorn settings.server:app --host $(HOST) --port $(PORT) --no-proxy-headers

# The test servers' binaries: installed with apt-get when missing and we are root.
test-deps:
	@need=(); \
	if [ -z "$$TEST_DATABASE_URL" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then need+=(postgresql); fi; \
	if [ -z "$$TEST_REDIS_URL" ] && ! command -v redis-server >/dev/null; then need+=(redis-server); fi; \
	if ! command -v pgbouncer >/dev/null; then need+=(pgbouncer); fi; \
	if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then need+=(prometheus); fi; \
	if [ $${#need[@]} -gt 0 ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing $${need[*]} with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$${need[@]}" >/dev/null; \
	  else \
	    echo "Missing $${need[*]}: install them (apt-get install $${need[*]}) or set TEST_DATABASE_URL/TEST_REDIS_URL"; exit 1; \
	  fi; \
	fi

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint deploy/Dockerfile
	$(MAKE) --no-print-directory bandit

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# --dist loadfile: a module's tests share one worker, so a module-scoped fixture (manage.py's
# seeded file, the query plans' data set) is built once, not once per worker. (xdist 3.8's
# loadgroup is silently a plain `load` under pytest 9.2: it can no longer tag node ids.)
# --no-loadscope-reorder: modules go out in tests/conftest.py's order, the long ones first.
test-postgres: install test-deps
	$(BIN)/coverage erase
	$(TEST_ENV) $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --cov --cov-report= $(PYTEST_ARGS)

test-embedded: install
	$(TEST_ENV) ETTER_TEST_BACKEND=sqlite $(BIN)/pytest -n $(TEST_WORKERS) -m embedded --cov --cov-append --cov-report= -q $(PYTEST_ARGS)

test: lint test-postgres test-embedded
	$(BIN)/coverage report --fail-under=85

# The performance indexes' worth on the medium data set (a benchmark, not a test): a
# throwaway PostgreSQL, p50/p95 of the hot endpoints before and after migration 0002, written
# to tests/performance/REPORT-db.md. Several minutes. BENCH_DB_ARGS="--scale large" for more.
bench-db: install test-deps
	$(BIN)/python -m tests.performance.bench_db $(BENCH_DB_ARGS)

# What the middleware stack costs a trivial endpoint against the bare app, in one run (uvicorn
# on one core, a load generator on the other, Redis started for the production variant); the
# figures go to tests/performance_report.md. About two minutes; fails when over 30%.
bench-middleware: install test-deps
	$(BIN)/python -m tests.performance.bench_middleware $(BENCH_MIDDLEWARE_ARGS)

# What the cache buys each cached endpoint on the medium data set: p50/p95 of a miss against a
# hit over HTTP (real uvicorn, throwaway PostgreSQL and Redis), the cached calls alone, and
# the hit rate of a mixed run; written to tests/performance_report.md. About two minutes.
bench-cache: install test-deps
	$(BIN)/python -m tests.performance.bench_cache $(BENCH_CACHE_ARGS)

# --- reliability (tests/faults) ----------------------------------------------------------------
# Faults on real processes in production settings, under steady traffic: Redis killed, PostgreSQL
# restarted or its connections terminated, SIGTERM to a gunicorn worker, the pool exhausted, a
# streaming replica, PgBouncer. Each test starts its own servers; a few minutes in all.
test-faults: install test-deps
	$(TEST_ENV) $(BIN)/pytest tests/faults -p no:xdist -p no:cacheprovider -q $(PYTEST_ARGS)

# --- security (issue 10, SECURITY.md) ------------------------------------------------------
# bandit: no medium or high finding in the application code (each exception is justified inline
# with `# nosec Bxxx` and the reason). pip-audit over the pinned requirements: fails on a known
# vulnerability; says so and passes when its advisory service cannot be reached.
BANDIT_PATHS := api common middleware models schemas services seeding settings alembic manage.py
bandit: install
	$(BIN)/bandit -q -r $(BANDIT_PATHS) --severity-level medium

audit: bandit
	$(BIN)/python -m tests.dependency_audit requirements.txt requirements-dev.txt

# --- observability (obs) ---------------------------------------------------------------------
# A real Prometheus (Debian's binary) scrapes two uvicorn workers on throwaway PostgreSQL and
# Redis every second under a little traffic; every Grafana panel and alert expression must return
# data. About a minute and a half; CI runs it after `make test`.
test-observability: install test-deps
	$(TEST_ENV) ETTER_TEST_PROMETHEUS=1 $(BIN)/pytest tests/integration/observability/test_prometheus_server.py -p no:xdist -q $(PYTEST_ARGS)

# What the Prometheus layer costs `GET /api/v1/auth/me`: metrics on against off (and on in
# multiprocess mode), same run; written to tests/performance_report.md. About two minutes.
bench-metrics: install test-deps
	$(BIN)/python -m tests.performance.bench_metrics $(BENCH_METRICS_ARGS)

# --- bench-http (issue 9) -------------------------------------------------------------------
# wrk, the load generator of bench-http: installed with apt-get when missing and we are root.
bench-deps:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else echo "Missing wrk: apt-get install wrk"; exit 1; fi; }

# Etter (2 workers, production settings) against a bare ASGI app doing the same work, on the
# medium data set (restored from a pg_dump cached in .data/ after the first run), driven by
# wrk in interleaved rounds; written to tests/performance_report.md. About 4 minutes.
bench-http: install test-deps bench-deps
	$(BIN)/python -m tests.performance.bench_http $(BENCH_HTTP_ARGS)

# --- load test (issue 12): the Etter mix of tests/load_test.py under Locust ------------------
# The whole report in one command: PostgreSQL + Redis + Etter (gunicorn, LOADTEST_WORKERS
# uvicorn workers, production settings), `medium` restored from .data/ (seeded and dumped on
# the first run), LOADTEST_USERS (1000) users held LOADTEST_HOLD (60) s with py-spy, the
# capacity sweep with a wrk cross-check, the phase table; writes tests/performance/loadtest/
# and the load-test sections and charts of tests/performance_report.md. About 20 minutes
# (first run: + about 3 to seed and dump `medium`). LOADTEST_PART=main|sweep|phases for one.
.PHONY: loadtest loadtest-smoke loadtest-report loadtest-deps
LOADTEST_PART ?= all
loadtest-deps: test-deps
	@if ! command -v wrk >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else echo "wrk missing (apt-get install wrk): the capacity cross-check is skipped"; fi; \
	fi

loadtest: install loadtest-deps
	$(BIN)/python -m tests.performance.loadtest $(LOADTEST_PART)

# The report sections and charts again from tests/performance/loadtest/results.json.
loadtest-report: install
	$(BIN)/python -m tests.performance.loadtest report

# CI: 50 users for 20 s on the `small` data set; fails on any failed request or any task of
# the mix that never ran. Never a timing assertion. About a minute.
loadtest-smoke: install test-deps
	LOADTEST_USERS=$${LOADTEST_USERS:-50} LOADTEST_HOLD=$${LOADTEST_HOLD:-20} $(BIN)/python -m tests.performance.loadtest smoke

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .coverage htmlcov etter.db etter.db-* storage
