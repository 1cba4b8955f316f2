"""Tests run against a real PostgreSQL 15 with pg_cron loaded: the project-owned `test` server.

A template database is migrated once per session and cloned for each test (pytest-postgresql's `load=`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from pytest_postgresql import factories

from devtools.localpg import LocalServer
from dispatcher.migrate import migrate

SERVER = LocalServer("test", int(os.environ.get("PGALERT_TEST_PORT", "55433")))


def pytest_sessionstart(session: pytest.Session) -> None:
    SERVER.start()


def migrate_template(host: str, port: int, user: str, dbname: str, password: str | None = None, **_: object) -> None:
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname, password=password, autocommit=True) as conn:
        migrate(conn, log=lambda *_: None)


postgresql_server = factories.postgresql_noproc(
    host="127.0.0.1", port=SERVER.port, user="postgres", dbname="pgalert_tests", load=[migrate_template]
)
postgresql = factories.postgresql("postgresql_server")


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


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit superuser connection to this test's freshly migrated database."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def connect(db_url: str) -> Iterator:
    """More autocommit connections to the same database, for racing sessions; all closed afterwards."""
    opened: list[psycopg.Connection] = []

    def open_connection(role: str | None = None) -> psycopg.Connection:
        connection = psycopg.connect(db_url, autocommit=True)
        if role:
            connection.execute(f"SET ROLE {role}")
        opened.append(connection)
        return connection

    yield open_connection
    for connection in opened:
        connection.close()


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
