"""Operating notes the README makes, each shown: analysts read from a streaming replica (nothing they call
writes), apps write through PgBouncer in transaction pooling mode."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from click.testing import CliRunner

from devtools.localpg import LocalBouncer, LocalServer, free_port
from dispatcher.cli import cli
from dispatcher.migrate import migrate
from tests.helpers import SEED_CRITICAL, SERVER, expand_grafana_macros, queries, wait_until

ANALYTICS_DB = "pgalert_on_a_primary"


@pytest.fixture
def primary_and_replica() -> Iterator[tuple[LocalServer, LocalServer]]:
    """A primary of its own with a hot standby streaming from it. Not the suite's server: every test there
    clones a database (a copy of the template through the WAL), and a standby on this machine fell minutes
    behind that stream while the suite ran in parallel. The database is not pg_cron's, so no job writes."""
    primary = LocalServer(f"primary-{uuid.uuid4().hex[:6]}", free_port())  # a fixed port could be a client's
    standby = None
    try:
        primary.start()
        with psycopg.connect(primary.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{ANALYTICS_DB}"')
        with psycopg.connect(primary.url(ANALYTICS_DB), autocommit=True) as conn:
            migrate(conn, log=lambda *_: None)
        standby = primary.start_replica(f"standby-{uuid.uuid4().hex[:6]}", free_port())
        yield primary, standby
    finally:
        if standby is not None:
            standby.destroy()
        primary.destroy()


def replayed(position: str, standby_url: str) -> bool:
    """The standby has replayed the primary's WAL up to `position`."""
    with psycopg.connect(standby_url, autocommit=True) as standby:
        return standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (position,)).fetchone()[0]


def test_analysts_read_sla_on_call_and_dashboards_from_a_streaming_replica(primary_and_replica):
    primary, replica = primary_and_replica
    with psycopg.connect(primary.url(ANALYTICS_DB), autocommit=True) as conn:
        read_from_the_standby(conn, replica)


def read_from_the_standby(conn: psycopg.Connection, replica: LocalServer) -> None:
    conn.execute("SELECT monitoring_raise_alert('db', 'critical', 't', p_occurred_at => now() - interval '5 minutes', "
                 "p_at => now() - interval '3 minutes')")
    conn.execute("SELECT monitoring_acknowledge_alert(1, 'alice', NULL, now() - interval '2 minutes')")
    conn.execute("SELECT monitoring_resolve_alert(1, 'alice')")
    login = f"pgalert_analyst_{uuid.uuid4().hex[:8]}"
    conn.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE monitoring_reader')
    try:
        written = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        wait_until(lambda: replayed(written, replica.url("postgres")), timeout=60)
        url = replica.url(conn.info.dbname).replace("//postgres@", f"//{login}@")
        with psycopg.connect(url, autocommit=True) as standby:
            assert standby.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
            summary = dict(standby.execute("SELECT metric, samples FROM monitoring_get_sla_summary(24)").fetchall())
            assert summary["mtta"] == 1 and summary["mttr"] == 1
            for dimension in ("alert_type", "severity", "provider"):
                standby.execute("SELECT * FROM monitoring_get_sla_breakdown(%s, 24)", (dimension,)).fetchall()
            assert standby.execute("SELECT person FROM monitoring_who_is_on_call('primary')").fetchone()[0]
            assert standby.execute("SELECT count(*) FROM monitoring_oncall_timeline('primary')").fetchone()[0] >= 4
            standby.execute("SELECT * FROM monitoring_delivery_queue").fetchall()
            for title, sql, _ in queries():
                assert standby.execute(expand_grafana_macros(sql)).description, title
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):  # it is a standby indeed
                standby.execute("INSERT INTO monitoring_events (event_type) VALUES ('x')")
        for args in (["sla", "--hours", "24", "--format", "json"], ["sla", "--by", "severity"], ["oncall", "--weeks", "2"]):
            result = CliRunner().invoke(cli, [*args, "--database-url", url])
            assert result.exit_code == 0, result.output
        assert json.loads(CliRunner().invoke(cli, ["sla", "--format", "json", "--database-url", url]).output)
    finally:
        conn.execute(f'DROP ROLE "{login}"')


APP_LOGIN = "pgalert_app_through_pgbouncer"


@pytest.fixture(scope="module")
def bouncer():
    with psycopg.connect(SERVER.url("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {APP_LOGIN}")
        admin.execute(f"CREATE ROLE {APP_LOGIN} LOGIN IN ROLE monitoring_writer")
    pool = LocalBouncer.start_on_a_free_port(SERVER, ("postgres", APP_LOGIN))
    yield pool
    pool.stop()
    with psycopg.connect(SERVER.url("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {APP_LOGIN}")


def test_apps_write_alerts_and_events_through_pgbouncer_in_transaction_pooling_mode(conn, bouncer):
    # psycopg prepares a statement after 5 runs, which PgBouncer 1.18's transaction pooling cannot carry
    # across server connections: prepare_threshold=None, as the README says
    url = bouncer.url(conn.info.dbname, APP_LOGIN)
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as app:
        for _ in range(8):
            app.execute(SEED_CRITICAL)  # the seed statement, verbatim, repeated: one alert, deduplicated
        with app.transaction():  # an app's own transaction, several statements
            app.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('disk', 'warning', 'Disk 91%')")
            assert app.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down')").fetchone()[0] > 0
            app.execute("INSERT INTO monitoring_events (event_type, value) VALUES ('api_response_time', 2350), "
                        "('payment_failure', NULL), ('payment_failure', NULL), ('payment_failure', NULL)")
    assert conn.execute("SELECT alert_type, occurrence_count FROM monitoring_alerts ORDER BY id").fetchall() == [
        ("payment_failure", 8), ("disk", 1), ("db_down", 1), ("payment_failure_critical", 1)]  # the count rule fired
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries").fetchone()[0] >= 9


@pytest.mark.cluster_roles  # migrates a database of its own: roles are the cluster's
def test_a_migrating_role_without_superuser_rights_installs_and_runs_pgalert(empty_db):
    """As on a managed PostgreSQL: the database's owner with CREATEROLE, no superuser."""
    name = f"pgalert_owner_{uuid.uuid4().hex[:8]}"
    dbname = empty_db.rsplit("/", 1)[1]
    with psycopg.connect(SERVER.url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{name}" LOGIN CREATEROLE')
        admin.execute(f'ALTER DATABASE "{dbname}" OWNER TO "{name}"')
    try:
        owner_url = empty_db.replace("//postgres@", f"//{name}@")
        from dispatcher.migrate import migrate

        with psycopg.connect(owner_url, autocommit=True) as owner:
            assert migrate(owner, log=lambda *_: None).pending
            owner.execute(SEED_CRITICAL)
            owner.execute("INSERT INTO monitoring_alert_rules (rule_name, rule_type, query, severity) "
                          "VALUES ('escape', 'sql', 'SELECT 1 AS value FROM (SELECT set_config(''role'', ''none'', TRUE)) AS e', 'info')")
            owner.execute("SELECT monitoring_evaluate_sql_rule('escape')")
            error = owner.execute("SELECT last_error FROM monitoring_alert_rules WHERE rule_name = 'escape'").fetchone()[0]
            assert "cannot set parameter" in error  # the sandbox holds without a superuser too
            assert owner.execute("SELECT count(*) FROM monitoring_deliveries").fetchone()[0] >= 3
            assert not migrate(owner, log=lambda *_: None).pending
    finally:
        with psycopg.connect(SERVER.url("postgres"), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{dbname}" OWNER TO postgres')
        with psycopg.connect(empty_db, autocommit=True) as conn:
            conn.execute(f'REASSIGN OWNED BY "{name}" TO postgres')
            conn.execute(f'DROP OWNED BY "{name}"')
        with psycopg.connect(SERVER.url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP ROLE "{name}"')
