"""The dispatchers run pgalert's scheduled jobs where pg_cron cannot (#37, 1): the real processes, against a
test database that is not pg_cron's. That each tick runs once is tested in SQL (tests/sql/test_scheduler.py);
here, what only processes show: a dispatcher killed mid-tick hands the tick over, and the mode is on /healthz
and in the metrics."""

from __future__ import annotations

import json
import signal
import socket
import urllib.request

import pytest

from tests.helpers import wait_until

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_without_pg_cron_the_dispatchers_run_the_jobs_and_say_so(conn, fake, start_dispatcher):
    conn.execute("UPDATE monitoring_scheduler_heartbeat SET beat_at = NULL, cron_beat_at = NULL")
    port = free_port()
    dispatcher = start_dispatcher("--scheduler", "auto", "--metrics-port", str(port))
    # the minute's heartbeat is due at once, and the dispatcher runs it: the jobs run, pg_cron did not run them
    wait_until(lambda: conn.execute("SELECT beat_at IS NOT NULL FROM monitoring_scheduler_heartbeat").fetchone()[0],
               timeout=30, interval=0.2)
    assert conn.execute("SELECT cron_beat_at FROM monitoring_scheduler_heartbeat").fetchone() == (None,)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
        health = json.loads(reply.read())
    assert health["scheduler"] == "dispatcher" and "pg_cron runs in database pgalert" in health["scheduler_reason"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert 'pgalert_scheduler_mode{mode="dispatcher"} 1.0' in reply.read().decode()
    assert "scheduled jobs run in the dispatchers" in dispatcher.output


def test_a_dispatcher_killed_mid_tick_hands_it_over_and_no_tick_runs_twice(conn, fake, start_dispatcher):
    """Three dispatchers race for one tick; the one that wins it is killed while the job runs: the job's work
    rolls back with its claim, and another runs the tick, once."""
    conn.execute("CREATE SEQUENCE probe_attempts")
    conn.execute("CREATE TABLE probe_runs (ran_at timestamptz DEFAULT clock_timestamp())")
    conn.execute("""CREATE FUNCTION probe() RETURNS void LANGUAGE plpgsql AS $$
                    BEGIN
                        IF nextval('public.probe_attempts') = 1 THEN  -- the first attempt is slow: it will be killed
                            PERFORM pg_sleep(2);
                        END IF;
                        INSERT INTO public.probe_runs DEFAULT VALUES;
                    END $$""")
    # only this minute matches (UTC, pg_cron's zone), and it stays due for the few minutes the test takes
    schedule = conn.execute("SELECT to_char(now() AT TIME ZONE 'UTC', 'FMMI FMHH24 * * *')").fetchone()[0]
    conn.execute("DELETE FROM monitoring_schedules")
    conn.execute("INSERT INTO monitoring_schedules (job_name, schedule, command) VALUES ('probe', %s, 'SELECT probe()')",
                 (schedule,))
    dispatchers = {name: start_dispatcher("--scheduler", "dispatcher", name=name) for name in ("d1", "d2", "d3")}
    running = wait_until(lambda: conn.execute(
        "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'pgalert scheduler %' "
        "AND wait_event = 'PgSleep'").fetchone(), timeout=30, interval=0.1)[0]
    killed = running.removeprefix("pgalert scheduler ")
    dispatchers.pop(killed).stop(signal.SIGKILL)
    wait_until(lambda: conn.execute("SELECT count(*) FROM probe_runs").fetchone()[0] >= 1, timeout=30, interval=0.1)
    tick, ran_by = conn.execute("SELECT last_tick, ran_by FROM monitoring_scheduler_ticks").fetchone()
    assert ran_by in dispatchers
    # every survivor looks again after the tick committed (its last query: what is due), and runs nothing
    committed = conn.execute("SELECT now()").fetchone()[0]
    wait_until(lambda: conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY(%s) AND state = 'idle' "
        "AND query_start > %s AND query LIKE '%%monitoring_due_scheduled_jobs%%'",
        ([f"pgalert scheduler {name}" for name in dispatchers], committed)).fetchone()[0] == len(dispatchers),
        timeout=30, interval=0.2)
    assert conn.execute("SELECT count(*) FROM probe_runs").fetchone() == (1,)
    assert conn.execute("SELECT last_tick, ran_by FROM monitoring_scheduler_ticks").fetchone() == (tick, ran_by)
    for dispatcher in dispatchers.values():
        assert dispatcher.stop() == 0
