"""pgalert notices when pg_cron stops running its jobs, and pages about it without pg_cron (#22, 4)."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest


def stale(conn, minutes: int) -> None:
    conn.execute("UPDATE monitoring_scheduler_heartbeat SET beat_at = now() - make_interval(mins => %s)", (minutes,))


def stalled_alerts(conn):
    return conn.execute("SELECT status, severity FROM monitoring_alerts WHERE alert_type = 'pgalert_scheduler_stalled' "
                        "ORDER BY id").fetchall()


def test_a_dispatcher_raises_one_alert_while_the_jobs_do_not_run_and_resolves_it_when_they_do(conn, connect):
    dispatcher = connect("monitoring_dispatcher")
    stale(conn, 1)
    assert dispatcher.execute("SELECT running FROM monitoring_check_scheduler()").fetchone() == (True,)
    assert stalled_alerts(conn) == []
    stale(conn, 10)
    seconds, running = dispatcher.execute("SELECT seconds_since_run, running FROM monitoring_check_scheduler()").fetchone()
    assert not running and 590 < seconds < 700
    dispatcher.execute("SELECT monitoring_check_scheduler()")  # every dispatcher asks: still one alert
    assert stalled_alerts(conn) == [("open", "critical")]
    # and it pages like any critical alert
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries AS d JOIN monitoring_alerts AS a ON a.id = d.alert_id "
                        "WHERE a.alert_type = 'pgalert_scheduler_stalled' AND d.provider = 'pagerduty'").fetchone() == (1,)
    conn.execute("SELECT monitoring_scheduler_heartbeat()")  # pg_cron runs again
    dispatcher.execute("SELECT monitoring_check_scheduler()")
    assert stalled_alerts(conn) == [("resolved", "critical")]


def test_jobs_that_never_ran_since_install_are_noticed(conn, connect):
    conn.execute("UPDATE monitoring_scheduler_heartbeat SET beat_at = NULL, installed_at = now() - interval '5 minutes'")
    assert connect("monitoring_reader").execute(
        "SELECT last_run_at, running FROM monitoring_scheduler_status()").fetchone() == (None, False)


@pytest.mark.parametrize("role", ["monitoring_writer", "monitoring_reader", "monitoring_inbound"])
def test_only_dispatchers_raise_the_scheduler_alert(connect, role):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        connect(role).execute("SELECT monitoring_check_scheduler()")


@pytest.mark.parametrize("stamp", ["'infinity'", "now() + interval '1 day'"])
def test_a_heartbeat_ahead_of_the_clock_is_just_now_not_an_error(conn, connect, stamp):
    """'infinity' (as the benchmark set it) made every dispatcher's check fail: "cannot subtract infinite
    timestamps", and with it the claim loop."""
    conn.execute(f"UPDATE monitoring_scheduler_heartbeat SET beat_at = {stamp}")
    assert connect("monitoring_dispatcher").execute(
        "SELECT seconds_since_run, running FROM monitoring_check_scheduler()").fetchone() == (0.0, True)
    assert stalled_alerts(conn) == []


# ---- the dispatchers' scheduler (#37, 1 and 4) -----------------------------------------------------------------

SCHEDULES = [  # schedule, minute, whether pg_cron runs it then
    ("* * * * *", "2026-03-04 05:06:00+00", True),
    ("17 3 * * *", "2026-03-04 03:17:00+00", True),
    ("17 3 * * *", "2026-03-04 03:18:00+00", False),
    ("*/5 * * * *", "2026-03-04 03:25:00+00", True),
    ("*/5 * * * *", "2026-03-04 03:26:00+00", False),
    ("10-20/5 * * * *", "2026-03-04 03:15:00+00", True),
    ("1,2,3 * * * *", "2026-03-04 03:02:00+00", True),
    ("0 0 * * 0", "2026-03-08 00:00:00+00", True),  # a Sunday, as 0
    ("0 0 * * 7", "2026-03-08 00:00:00+00", True),  # and as 7
    ("0 0 1 * 1", "2026-03-09 00:00:00+00", True),  # both day fields restricted: either matches
    ("0 0 1 * 1", "2026-03-10 00:00:00+00", False),
    ("30 seconds", "2026-03-04 03:15:00+00", False),
]


def test_a_schedule_matches_the_minutes_pg_cron_would_run_it(conn):
    found = [(schedule, at, conn.execute("SELECT _monitoring_cron_matches(%s, %s)", (schedule, at)).fetchone()[0])
             for schedule, at, _ in SCHEDULES]
    assert found == SCHEDULES


@pytest.fixture
def probe_job(conn):
    """A job whose runs are counted: each run records its tick, slowly enough for dispatchers to overlap."""
    conn.execute("CREATE TABLE probe_runs (ran_by text, ran_at timestamptz DEFAULT clock_timestamp())")
    conn.execute("""CREATE FUNCTION probe() RETURNS void LANGUAGE sql AS
                    $$ SELECT pg_sleep(0.02); INSERT INTO public.probe_runs DEFAULT VALUES $$""")
    conn.execute("INSERT INTO monitoring_schedules (job_name, schedule, command) VALUES ('probe', '* * * * *', 'SELECT probe()')")
    return "probe"


def minute(conn, minutes_ago: int):
    return conn.execute("SELECT date_trunc('minute', now()) - make_interval(mins => %s)", (minutes_ago,)).fetchone()[0]


def run_due(dispatcher, at, name: str, only: str | None = None) -> list[str]:
    """What a dispatcher's scheduler does at `at`: run each due job (or only the one named)."""
    return [job for (job, ran) in dispatcher.execute(
        "SELECT job_name, monitoring_run_scheduled_job(job_name, tick, %s) FROM monitoring_due_scheduled_jobs(%s) "
        "WHERE job_name = coalesce(%s, job_name)", (name, at, only)).fetchall() if ran]


def test_without_pg_cron_here_the_dispatchers_run_the_jobs_and_say_why(conn, connect):
    """The test databases are not cron.database_name: pg_cron cannot run their jobs."""
    dispatcher = connect("monitoring_dispatcher")
    problem, fix = dispatcher.execute("SELECT problem, superuser_sql FROM monitoring_scheduler_diagnosis()").fetchone()
    database = conn.execute("SELECT current_database()").fetchone()[0]
    assert problem == f"pg_cron runs in database pgalert, not in {database} (cron.database_name)"
    assert f"ALTER SYSTEM SET cron.database_name = '{database}';" in fix and "CREATE EXTENSION" in fix
    assert dispatcher.execute("SELECT mode, reason FROM monitoring_scheduler_mode('auto')").fetchone() == ("dispatcher", problem)
    assert dispatcher.execute("SELECT mode FROM monitoring_scheduler_mode('pg_cron')").fetchone() == ("pg_cron",)
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        dispatcher.execute("SELECT monitoring_scheduler_mode('cron')")
    # every job of pgalert is due at the minute, and runs as pg_cron would run it (as the owner)
    conn.execute("UPDATE monitoring_scheduler_heartbeat SET beat_at = NULL, cron_beat_at = NULL")
    this_minute = minute(conn, 0)
    ran = run_due(dispatcher, this_minute, "d1")
    every_minute = {job for (job,) in conn.execute("SELECT job_name FROM monitoring_schedules WHERE schedule = '* * * * *'")}
    assert every_minute <= set(ran)
    assert conn.execute("SELECT count(*) FROM monitoring_scheduler_ticks WHERE last_error IS NOT NULL").fetchone() == (0,)
    # the heartbeat says the jobs run, and that pg_cron did not run them
    assert conn.execute("SELECT beat_at IS NOT NULL, cron_beat_at FROM monitoring_scheduler_heartbeat").fetchone() == (True, None)
    assert run_due(dispatcher, this_minute, "d2") == []  # this minute has run


def test_each_tick_runs_once_across_dispatchers_and_a_dispatcher_killed_mid_tick_leaves_it_to_another(conn, connect, probe_job):
    first, second, third = (connect("monitoring_dispatcher") for _ in range(3))
    tick = minute(conn, 3)
    older = tick - timedelta(minutes=1)
    first.execute("BEGIN")
    assert first.execute("SELECT monitoring_run_scheduled_job('probe', %s, 'first')", (tick,)).fetchone() == (True,)
    # while the first runs it, the others skip it rather than wait or run it again
    assert second.execute("SELECT monitoring_run_scheduled_job('probe', %s, 'second')", (tick,)).fetchone() == (False,)
    # the first dies mid-tick: its work and its claim go together
    conn.execute("SELECT pg_terminate_backend(%s)", (first.info.backend_pid,))
    assert run_due(third, tick, "third", "probe") == ["probe"]
    assert run_due(second, tick, "second", "probe") == []
    assert conn.execute("SELECT count(*) FROM probe_runs").fetchone() == (1,)
    assert conn.execute("SELECT last_tick, ran_by FROM monitoring_scheduler_ticks WHERE job_name = 'probe'").fetchone() == (tick, "third")
    # an older tick is never run after a newer one
    assert second.execute("SELECT monitoring_run_scheduled_job('probe', %s, 'second')", (older,)).fetchone() == (False,)


def test_three_dispatchers_racing_run_every_tick_exactly_once(conn, connect, probe_job):
    import threading

    dispatchers = [connect("monitoring_dispatcher") for _ in range(3)]
    ticks = [minute(conn, 4) + timedelta(minutes=m) for m in range(5)]  # five minutes of a test clock
    ran: list[tuple[int, str]] = []
    for at in ticks:
        start = threading.Barrier(3)

        def race(dispatcher, name, at=at, start=start):
            start.wait()
            ran.extend((at, job) for job in run_due(dispatcher, at, name, "probe"))

        threads = [threading.Thread(target=race, args=(d, f"d{i}")) for i, d in enumerate(dispatchers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(ran) == [(tick, "probe") for tick in ticks]
    assert conn.execute("SELECT count(*) FROM probe_runs").fetchone() == (5,)


def test_a_failing_job_has_its_tick_and_its_error_kept(conn, connect):
    conn.execute("INSERT INTO monitoring_schedules (job_name, schedule, command) VALUES ('broken', '* * * * *', 'SELECT no_such_function()')")
    dispatcher, this_minute = connect("monitoring_dispatcher"), minute(conn, 0)
    assert "broken" in run_due(dispatcher, this_minute, "d1")
    error = conn.execute("SELECT last_error FROM monitoring_scheduler_ticks WHERE job_name = 'broken'").fetchone()[0]
    assert "no_such_function" in error
    assert run_due(dispatcher, this_minute, "d1") == []


def test_a_sql_rule_job_runs_under_its_timeout_in_a_dispatcher(conn, connect):
    conn.execute("""INSERT INTO monitoring_alert_rules (rule_name, rule_type, query, query_timeout, severity)
                    VALUES ('sleepy', 'sql', 'SELECT 1 AS value FROM pg_sleep(30)', '100 milliseconds', 'info')""")
    dispatcher = connect("monitoring_dispatcher")
    due = dispatcher.execute("SELECT tick, timeout_ms FROM monitoring_due_scheduled_jobs() WHERE job_name = 'pgalert_rule_sleepy'").fetchone()
    assert due[1] == 100
    with dispatcher.transaction():
        dispatcher.execute(f"SET LOCAL statement_timeout = {due[1]}")
        assert dispatcher.execute("SELECT monitoring_run_scheduled_job('pgalert_rule_sleepy', %s, 'd1')", (due[0],)).fetchone() == (True,)
    error = conn.execute("SELECT last_error FROM monitoring_alert_rules WHERE rule_name = 'sleepy'").fetchone()[0]
    assert error.startswith("query canceled after running longer than its query_timeout")


def test_the_stalled_alert_names_its_cause_and_the_command_that_mends_it(conn, connect):
    stale(conn, 10)
    connect("monitoring_dispatcher").execute("SELECT monitoring_check_scheduler()")
    message = conn.execute("SELECT message FROM monitoring_alerts WHERE alert_type = 'pgalert_scheduler_stalled'").fetchone()[0]
    assert "Cause: pg_cron runs in database pgalert, not in" in message
    assert "run `pgalert dispatch` with --scheduler auto" in message
    assert "ALTER SYSTEM SET cron.database_name" in message


def test_the_stalled_alert_names_the_job_that_fails_in_the_dispatchers(conn, connect):
    conn.execute("UPDATE monitoring_schedules SET command = 'SELECT monitoring_scheduler_heartbeat(1)' "
                 "WHERE job_name = 'pgalert_heartbeat'")
    dispatcher = connect("monitoring_dispatcher")
    run_due(dispatcher, minute(conn, 0), "d1")
    stale(conn, 10)
    dispatcher.execute("SELECT monitoring_check_scheduler()")
    message = conn.execute("SELECT message FROM monitoring_alerts WHERE alert_type = 'pgalert_scheduler_stalled'").fetchone()[0]
    assert "The dispatchers run the jobs (pg_cron does not), and job pgalert_heartbeat fails: function" in message
