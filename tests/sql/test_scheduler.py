"""pgalert notices when pg_cron stops running its jobs, and pages about it without pg_cron (#22, 4)."""

from __future__ import annotations

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
