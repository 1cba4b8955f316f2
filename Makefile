# Two commands matter on a fresh machine: `make demo` and `make test`. Both install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_BIN := /usr/lib/postgresql/15/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: deps system-deps test lint demo screenshots bench install-script reference wheel-smoke clean

# Chromium is for the console's browser tests (Playwright drives Debian's build: its own download cannot work here)
system-deps:
	@if [ ! -x $(PG_BIN)/postgres ] || [ ! -f /usr/lib/postgresql/15/lib/pg_cron.so ] || ! command -v runuser >/dev/null \
		|| [ ! -x /usr/sbin/pgbouncer ] || [ ! -x /usr/bin/chromium ]; then \
		echo "installing PostgreSQL 15, pg_cron, PgBouncer and Chromium from Debian's packages"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql-15 postgresql-15-cron pgbouncer \
			util-linux chromium >/dev/null; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

deps: system-deps $(VENV)/.installed

lint: deps
	$(VENV)/bin/ruff check dispatcher devtools tests bench
	$(VENV)/bin/sqlfluff lint sql

# Every test (the installed wheel's included), the SQL tests both on a fresh install and on a database built by
# pgalert 0.1.0 and upgraded, which must behave exactly as a fresh one; in parallel, on every core and at least
# two (the tests wait on subprocesses and the database as much as they compute).
TEST_WORKERS ?= $(shell n=$$(nproc); [ $$n -lt 2 ] && n=2; echo $$n)
test: lint
	$(PY) -m pytest -n $(TEST_WORKERS)

# the console's pictures in the README and docs/console.md, taken by the browser tests from a live console
screenshots: deps
	PGALERT_SCREENSHOTS=$(CURDIR)/docs/screenshots $(PY) -m pytest -p no:xdist -q tests/integration/test_console.py -k screenshots

demo: deps
	$(PY) -m devtools.demo

# the optional `bench` extra adds the peer (pgqueuer) to the hot-path comparison; `make test` stays without it
bench: deps
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench.run

# Regenerate sql/install.psql (the psql-only install path) after adding a migration or a definitions file.
install-script: deps
	$(PY) -m devtools.install_script --write

# Regenerate sql/schema.sql, docs/reference/sql.md and docs/reference/cli.md after changing the schema, a
# COMMENT ON or a command's help (tests/sql/test_reference.py says when one is stale).
reference: deps
	$(PY) -m devtools.reference --write

clean:
	-$(PY) -m devtools.localpg destroy --name test
	-$(PY) -m devtools.localpg destroy --name demo --port 55432
	-$(PY) -m devtools.localpg destroy --name bench --port 55434
	rm -rf $(VENV)
