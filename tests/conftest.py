"""Tests run against a real PostgreSQL 15 with pg_cron loaded: the project-owned `test` server.

Two template databases are migrated once per run and cloned for each test (CREATE DATABASE ... TEMPLATE, by
pytest-postgresql's DatabaseJanitor): a fresh install, and a database built by pgalert 0.1.0 and then upgraded.
Every test of tests/sql runs on both ([fresh] and [upgraded]), which proves that an upgraded database behaves
as a fresh one; the other tests use the fresh one. PGALERT_TEST_UPGRADE=1 runs tests/sql on the upgraded one
only.

`make test` runs the tests in parallel (pytest-xdist). Roles are the cluster's, and migrating a new database
changes them, so whatever does (building a template, a test marked `cluster_roles`) holds one cluster-wide
advisory lock while it does. The server listens on a port chosen per checkout (PGALERT_TEST_PORT overrides it)
and a run stops the server it started, so two checkouts can run `make test` one after the other or side by side.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from dispatcher.migrate import migrate
from tests.helpers import SERVER

UPGRADED_ONLY = os.environ.get("PGALERT_TEST_UPGRADE") == "1"
LEGACY_MIGRATIONS = Path(__file__).resolve().parent / "fixtures" / "pgalert-0.1.0" / "migrations"
CLUSTER_LOCK = 7_330_001  # pg_advisory_lock key, taken in the postgres database
TEMPLATE_PREFIX = "pgalert_tmpl_"
RUN_TOKEN = pytest.StashKey[str]()
_started_here: list[bool] = []
_templates: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    worker_input = getattr(config, "workerinput", None)
    # the controlling process's pid is in the name: a run drops the templates of runs whose process is gone
    config.stash[RUN_TOKEN] = worker_input["pgalert_run"] if worker_input else f"{uuid.uuid4().hex[:8]}_{os.getpid()}"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # pytest-xdist: every worker clones the same templates
    node.workerinput["pgalert_run"] = node.config.stash[RUN_TOKEN]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `long` first: the parallel run hands tests out in order, and one that waits a minute on
    pg_cron's clock costs a minute of wall time only when it is not the last thing a worker does."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


def pytest_sessionstart(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return
    _started_here.append(not SERVER.is_running())
    SERVER.start()
    _drop_templates(lambda run: not Path(f"/proc/{run.rpartition('_')[2]}").exists())  # killed runs' leftovers


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return
    _drop_templates(lambda run: run == session.config.stash[RUN_TOKEN])
    if _started_here and _started_here[0] and not os.environ.get("PGALERT_TEST_KEEP_SERVER"):
        SERVER.stop()


def _drop_templates(of_run) -> None:
    """Drop the templates (and half-built ones) of the runs for which of_run(run token) is true: each run
    builds its own from the SQL as it is now, and leaves those of a run going on beside it alone."""
    with psycopg.connect(SERVER.url("postgres"), autocommit=True) as admin:
        names = admin.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (TEMPLATE_PREFIX + "%",))
        for (name,) in names.fetchall():
            run = name.removeprefix(TEMPLATE_PREFIX).split("_", 1)[1].removesuffix("_building")
            if of_run(run):
                admin.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE false')
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def template_for(origin: str, run: str) -> str:
    """The template of this run built `origin`ally (fresh, or by 0.1.0 and upgraded): built by the first
    process that needs it, under the cluster lock; the others wait for it and clone it."""
    name = f"{TEMPLATE_PREFIX}{origin}_{run}"
    if name in _templates:
        return name
    with psycopg.connect(SERVER.url("postgres"), autocommit=True) as admin:
        admin.execute("SELECT pg_advisory_lock(%s)", (CLUSTER_LOCK,))  # released when this connection closes
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            building = f"{name}_building"
            admin.execute(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{building}"')
            with psycopg.connect(SERVER.url(building), autocommit=True) as conn:
                if origin == "upgraded":
                    for path in sorted(LEGACY_MIGRATIONS.glob("*.sql")):  # as 0.1.0's `pgalert migrate` applied them
                        with conn.transaction():
                            conn.execute(path.read_text())
                migrate(conn, log=lambda *_: None)
            admin.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            admin.execute(f'ALTER DATABASE "{name}" IS_TEMPLATE true')
    _templates[name] = name
    return name


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test of tests/sql that uses a database runs on a fresh install and on an upgraded one."""
    if "schema_origin" in metafunc.fixturenames and metafunc.definition.path.parent.name == "sql":
        metafunc.parametrize("schema_origin", ["upgraded"] if UPGRADED_ONLY else ["fresh", "upgraded"],
                             indirect=True)


@pytest.fixture
def schema_origin(request: pytest.FixtureRequest) -> str:
    """fresh or upgraded: how the test's database was built (fresh unless the test is parametrized)."""
    return getattr(request, "param", "fresh")


@pytest.fixture
def db_url(request: pytest.FixtureRequest, schema_origin: str) -> Iterator[str]:
    """A database of this test's own, cloned from the migrated template; dropped afterwards."""
    template = template_for(schema_origin, request.config.stash[RUN_TOKEN])
    janitor = DatabaseJanitor(user="postgres", host="127.0.0.1", port=SERVER.port,
                              dbname=f"pgalert_test_{uuid.uuid4().hex[:10]}", template_dbname=template)
    janitor.init()
    try:
        yield SERVER.url(janitor.dbname)
    finally:
        janitor.drop()


@pytest.fixture(autouse=True)
def _alone_in_the_cluster(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked cluster_roles holds the cluster lock, so no template is built and no other such test runs
    beside it. The templates are built first: building one needs the same lock."""
    if not request.node.get_closest_marker("cluster_roles"):
        yield
        return
    for origin in ("fresh", "upgraded"):
        template_for(origin, request.config.stash[RUN_TOKEN])
    with psycopg.connect(SERVER.url("postgres"), autocommit=True) as lock:
        lock.execute("SELECT pg_advisory_lock(%s)", (CLUSTER_LOCK,))
        yield


@pytest.fixture
def empty_db() -> Iterator[str]:
    """A database of its own that nothing has migrated yet; dropped afterwards."""
    name = f"pgalert_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER.url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield SERVER.url(name)
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _escalation_only_where_asked(request: pytest.FixtureRequest) -> None:
    """Core tests assert the core's deliveries exactly; the seed's on-call escalation would add a notify to
    every critical alert. Tests marked `escalation` (test_oncall.py) keep it."""
    if "db_url" not in request.fixturenames:
        return
    with psycopg.connect(request.getfixturevalue("db_url"), autocommit=True) as connection:
        if not request.node.get_closest_marker("escalation"):
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
    """login_url("monitoring_dispatcher"): the URL of a LOGIN role made for this test that holds only that role
    (or those roles: serve's console holds monitoring_inbound and monitoring_console), for a process (dispatcher,
    serve, CLI) to run as its documented roles and no more; dropped afterwards."""
    logins: list[str] = []

    def make(role: str, *more: str) -> str:
        login = f"pgalert_login_{role.removeprefix('monitoring_')}_{uuid.uuid4().hex[:8]}"
        roles = ", ".join(f'"{name}"' for name in (role, *more))
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE {roles}')
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


