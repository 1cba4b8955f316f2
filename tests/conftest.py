"""Tests run against a real PostgreSQL 15 with pg_cron loaded: the project-owned `test` server.

A template database is migrated once per session and cloned for each test (pytest-postgresql's `load=`).
With PGALERT_TEST_UPGRADE=1 the template is a database built by pgalert 0.1.0 and then upgraded, so the same
tests prove that an upgraded database behaves as a fresh one (`make test` runs tests/sql both ways).

The server listens on a port chosen per checkout (PGALERT_TEST_PORT overrides it) and a run stops the server
it started, so two checkouts can run `make test` one after the other or side by side.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pytest_postgresql import factories

from devtools.localpg import LocalServer, checkout_port
from dispatcher.migrate import migrate

SERVER = LocalServer("test", int(os.environ.get("PGALERT_TEST_PORT", checkout_port(55500, 400))))
UPGRADE = os.environ.get("PGALERT_TEST_UPGRADE") == "1"
LEGACY_MIGRATIONS = Path(__file__).resolve().parent / "fixtures" / "pgalert-0.1.0" / "migrations"
_started_here: list[bool] = []


def pytest_sessionstart(session: pytest.Session) -> None:
    _started_here.append(not SERVER.is_running())
    SERVER.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _started_here and _started_here[0] and not os.environ.get("PGALERT_TEST_KEEP_SERVER"):
        SERVER.stop()


def migrate_template(host: str, port: int, user: str, dbname: str, password: str | None = None, **_: object) -> None:
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname, password=password, autocommit=True) as conn:
        if UPGRADE:
            for path in sorted(LEGACY_MIGRATIONS.glob("*.sql")):  # as 0.1.0's `pgalert migrate` applied them
                with conn.transaction():
                    conn.execute(path.read_text())
        migrate(conn, log=lambda *_: None)


postgresql_server = factories.postgresql_noproc(
    host="127.0.0.1", port=SERVER.port, user="postgres", dbname="pgalert_tests", load=[migrate_template]
)
postgresql = factories.postgresql("postgresql_server")


@pytest.fixture
def empty_db() -> Iterator[str]:
    """A database of its own that nothing has migrated yet; dropped afterwards."""
    name = f"pgalert_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER.url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield SERVER.url(name)
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(postgresql: psycopg.Connection) -> str:
    info = postgresql.info
    return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"


@pytest.fixture(autouse=True)
def _escalation_only_where_asked(request: pytest.FixtureRequest) -> None:
    """Core tests assert the core's deliveries exactly; the seed's on-call escalation would add a notify to
    every critical alert. Tests marked `escalation` (test_oncall.py) keep it."""
    if "db_url" not in request.fixturenames or request.node.get_closest_marker("escalation"):
        return
    with psycopg.connect(request.getfixturevalue("db_url"), autocommit=True) as connection:
        connection.execute("DELETE FROM monitoring_escalation_assignments")
        # pg_cron runs only in its own database, not in this clone: the scheduler heartbeat is stamped so that a
        # dispatcher here does not raise pgalert_scheduler_stalled (tests of it make the heartbeat stale)
        connection.execute("UPDATE monitoring_scheduler_heartbeat SET beat_at = now()")


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit superuser connection to this test's freshly migrated database."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def login_url(db_url: str) -> Iterator:
    """login_url("monitoring_dispatcher"): the URL of a LOGIN role made for this test that holds only that role,
    for a process (dispatcher, serve, CLI) to run as its documented role and no more; dropped afterwards."""
    logins: list[str] = []

    def make(role: str) -> str:
        login = f"pgalert_login_{role.removeprefix('monitoring_')}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE "{role}"')
        logins.append(login)
        return db_url.replace("postgresql://postgres@", f"postgresql://{login}@", 1)

    yield make
    with psycopg.connect(db_url, autocommit=True) as admin:
        for login in logins:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (login,))
            admin.execute(f'DROP OWNED BY "{login}"')
            admin.execute(f'DROP ROLE "{login}"')


@pytest.fixture
def connect(db_url: str) -> Iterator:
    """More autocommit connections to the same database, for racing sessions; all closed afterwards.

    connect("monitoring_writer") logs in as a LOGIN role made for this test that holds only that role, as an
    app, analyst, dispatcher or admin would: not a superuser session under SET ROLE, which RESET ROLE undoes."""
    opened: list[psycopg.Connection] = []
    logins: list[str] = []

    def open_connection(role: str | None = None) -> psycopg.Connection:
        url = db_url
        if role:
            login = f"pgalert_login_{role.removeprefix('monitoring_')}_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(db_url, autocommit=True) as admin:
                admin.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE "{role}"')
            logins.append(login)
            url = db_url.replace("postgresql://postgres@", f"postgresql://{login}@", 1)
        connection = psycopg.connect(url, autocommit=True)
        opened.append(connection)
        return connection

    yield open_connection
    for connection in opened:
        connection.close()
    if logins:
        with psycopg.connect(db_url, autocommit=True) as admin:
            for login in logins:
                admin.execute(f'DROP OWNED BY "{login}"')
                admin.execute(f'DROP ROLE "{login}"')


SEED_CRITICAL = (
    "INSERT INTO monitoring_alerts (alert_type, severity, title, message) "
    "VALUES ('payment_failure', 'critical', 'Test', 'Test PagerDuty');"
)


def deliveries(conn: psycopg.Connection, alert_id: int | None = None) -> list[tuple]:
    """(provider, action, status) of every delivery, in id order."""
    sql = "SELECT provider, action, status FROM monitoring_deliveries"
    if alert_id is not None:
        return conn.execute(sql + " WHERE alert_id = %s ORDER BY id", (alert_id,)).fetchall()
    return conn.execute(sql + " ORDER BY id").fetchall()
