"""A fresh PostgreSQL 15 + pg_cron 1.4 cluster runs the jobs `pgalert migrate` installs within their first minute
(#22, 4). pg_cron keeps its jobs in a cache; the migration's one large transaction could leave it stale, and the
jobs never ran until something else touched cron.job. A cluster without pg_cron at all: migrate says so and
what a superuser runs, and the dispatchers run the jobs (#37, 1 and 2)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from click.testing import CliRunner

from devtools.localpg import CRON_DATABASE, LocalServer, free_port
from dispatcher.cli import cli
from dispatcher.migrate import migrate
from tests.helpers import wait_until


@pytest.fixture
def fresh_cluster():
    server = LocalServer(f"fresh-{uuid.uuid4().hex[:6]}", free_port())
    try:
        server.start()  # initdb, pg_cron preloaded, its database and extension
        yield server
    finally:
        server.destroy()


@pytest.mark.integration
@pytest.mark.long
def test_the_jobs_of_a_fresh_install_run_in_their_first_minute(fresh_cluster):
    with psycopg.connect(fresh_cluster.url(CRON_DATABASE), autocommit=True) as conn:
        migrate(conn, log=lambda *_: None)
        assert conn.execute("SELECT count(*) FROM cron.job WHERE jobname = 'pgalert_heartbeat'").fetchone() == (1,)
        # the next minute boundary, plus pg_cron's own second: never more than about 61 s away
        wait_until(lambda: conn.execute("SELECT beat_at IS NOT NULL FROM monitoring_scheduler_heartbeat").fetchone()[0],
                   timeout=125, interval=0.5)
        assert conn.execute("SELECT running FROM monitoring_scheduler_status()").fetchone() == (True,)
        # every job of the minute ran, not only the heartbeat
        every_minute = {name for (name,) in conn.execute(
            "SELECT job_name FROM monitoring_schedules WHERE schedule = '* * * * *'")}
        wait_until(lambda: every_minute <= {name for (name,) in conn.execute(
            "SELECT DISTINCT j.jobname FROM cron.job_run_details AS d JOIN cron.job AS j USING (jobid) "
            "WHERE d.status = 'succeeded'")}, timeout=30, interval=0.5)


@pytest.fixture
def cluster_without_pg_cron():
    server = LocalServer(f"nocron-{uuid.uuid4().hex[:6]}", free_port(), pg_cron=False)
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.mark.integration
@pytest.mark.cluster_roles  # a cluster of its own, marked as the suite marks cluster tests
def test_without_pg_cron_migrate_says_so_and_the_dispatchers_run_the_jobs(cluster_without_pg_cron):
    url = cluster_without_pg_cron.url(CRON_DATABASE)
    result = CliRunner().invoke(cli, ["migrate", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert ("Scheduled jobs: pg_cron cannot run pgalert's" in result.output
            and "jobs here: pg_cron is not loaded by this server (shared_preload_libraries)." in result.output)
    assert "ALTER SYSTEM SET shared_preload_libraries = 'pg_cron';" in result.output
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT mode FROM monitoring_scheduler_mode()").fetchone() == ("dispatcher",)
        ran = conn.execute("SELECT count(*) FILTER (WHERE monitoring_run_scheduled_job(job_name, tick, 'd1')) "
                           "FROM monitoring_due_scheduled_jobs()").fetchone()[0]
        assert ran >= conn.execute("SELECT count(*) FROM monitoring_schedules WHERE schedule = '* * * * *'").fetchone()[0]
        assert conn.execute("SELECT running FROM monitoring_scheduler_status()").fetchone() == (True,)
        assert conn.execute("SELECT count(*) FROM monitoring_scheduler_ticks WHERE last_error IS NOT NULL").fetchone() == (0,)
