"""On-call: rotations across DST, overrides, escalation timelines with explicit times, races, bad input."""

from __future__ import annotations

import datetime as dt
import threading
import zoneinfo

import psycopg
import pytest

from dispatcher.console import views
from dispatcher.console.app import QUERIES_FILE
from dispatcher.db import named_queries
from tests.helpers import make_schedule

pytestmark = pytest.mark.escalation

T = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
M = dt.timedelta(minutes=1)


def on_call(conn, schedule, at):
    return conn.execute("SELECT person FROM monitoring_who_is_on_call(%s, %s)", (schedule, at)).fetchone()[0]


@pytest.mark.parametrize(("zone", "handoff_after_dst"), [
    ("Europe/Berlin", dt.datetime(2026, 3, 30, 9, 0)),      # DST began Sunday 2026-03-29
    ("Europe/Berlin", dt.datetime(2026, 10, 26, 9, 0)),     # DST ended Sunday 2026-10-25
    ("America/Sao_Paulo", dt.datetime(2018, 11, 5, 9, 0)),  # DST began Sunday 2018-11-04
    ("America/Sao_Paulo", dt.datetime(2019, 2, 18, 9, 0)),  # DST ended Sunday 2019-02-17
])
def test_handoffs_keep_their_local_time_across_dst(conn, zone, handoff_after_dst):
    make_schedule(conn, "weekly", zone, ["ana", "bruno", "carla"], start="2018-01-01")
    local = zoneinfo.ZoneInfo(zone)
    handoff = handoff_after_dst.replace(tzinfo=local)
    before, after = on_call(conn, "weekly", handoff - M), on_call(conn, "weekly", handoff + M)
    assert before != after  # the handoff happens at 09:00 local time on the wall clock
    week_before = handoff - dt.timedelta(days=7)
    assert week_before.utcoffset() != handoff.utcoffset()  # the week really crossed a DST change
    assert on_call(conn, "weekly", week_before + M) == before and on_call(conn, "weekly", week_before - M) != before


def test_rotation_order_and_next_handoff(conn):
    make_schedule(conn, "rot", "UTC", ["a", "b", "c"], start="2026-01-05")
    monday = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
    assert [on_call(conn, "rot", monday + dt.timedelta(days=7 * w, minutes=1)) for w in range(4)] == ["a", "b", "c", "a"]
    ends = conn.execute("SELECT shift_ends_at FROM monitoring_who_is_on_call('rot', %s)", (monday + M,)).fetchone()[0]
    assert ends == monday + dt.timedelta(days=7)


def test_overrides_come_first_and_may_not_overlap(conn):
    make_schedule(conn, "rot", "UTC", ["a", "b"])
    conn.execute("INSERT INTO monitoring_people (name) VALUES ('z')")
    conn.execute("INSERT INTO monitoring_oncall_overrides (schedule_id, person_id, during) SELECT s.id, p.id, tstzrange(%s, %s) "
                 "FROM monitoring_oncall_schedules s, monitoring_people p WHERE s.name = 'rot' AND p.name = 'z'", (T, T + 60 * M))
    assert on_call(conn, "rot", T + M) == "z" and on_call(conn, "rot", T + 61 * M) != "z"
    with pytest.raises(psycopg.errors.ExclusionViolation, match="overrides_do_not_overlap"):
        conn.execute("INSERT INTO monitoring_oncall_overrides (schedule_id, person_id, during) SELECT s.id, p.id, tstzrange(%s, %s) "
                     "FROM monitoring_oncall_schedules s, monitoring_people p WHERE s.name = 'rot' AND p.name = 'a'", (T + 30 * M, T + 90 * M))
    rows = conn.execute("SELECT person, is_override FROM monitoring_oncall_timeline('rot', %s, %s)", (T, T + 2 * 60 * M)).fetchall()
    assert ("z", True) in rows


@pytest.mark.parametrize(("statements", "error", "message"), [
    (["INSERT INTO monitoring_oncall_schedules (name) VALUES ('empty')"], psycopg.errors.CheckViolation, "schedule empty has no participants"),
    (["INSERT INTO monitoring_escalation_policies (name) VALUES ('hollow')"], psycopg.errors.CheckViolation, "escalation policy hollow has no steps"),
    (["INSERT INTO monitoring_escalation_steps SELECT id, 9, '-5 minutes', 'person', NULL, (SELECT id FROM monitoring_people LIMIT 1) "
      "FROM monitoring_escalation_policies"], psycopg.errors.CheckViolation, "delay_is_not_negative"),
    (["INSERT INTO monitoring_oncall_overrides (schedule_id, person_id, during) SELECT id, 99999, tstzrange(now(), now() + interval '1 hour') "
      "FROM monitoring_oncall_schedules"], psycopg.errors.ForeignKeyViolation, "is not present in table \"monitoring_people\""),
    (["INSERT INTO monitoring_people (name) VALUES ('p')",
      "INSERT INTO monitoring_oncall_schedules (name, time_zone) VALUES ('mars', 'Mars/Olympus')",
      "INSERT INTO monitoring_oncall_participants SELECT s.id, 1, p.id FROM monitoring_oncall_schedules s, monitoring_people p WHERE s.name = 'mars' AND p.name = 'p'"],
     psycopg.errors.InvalidParameterValue, "unknown time zone 'Mars/Olympus'"),
])
def test_bad_input_is_refused_clearly(conn, statements, error, message):
    with pytest.raises(error, match=message), conn.transaction():
        for statement in statements:
            conn.execute(statement)


def raise_critical(conn, at=T):
    return conn.execute("SELECT monitoring_raise_alert('payment_failure', 'critical', 'Payments failing', p_at => %s)", (at,)).fetchone()[0]


def notified(conn, alert_id):
    return conn.execute("SELECT context->>'person' FROM monitoring_deliveries WHERE alert_id = %s AND action = 'notify' "
                        "AND provider = 'slack' ORDER BY id", (alert_id,)).fetchall()


def run(conn, at):
    return conn.execute("SELECT notifications FROM monitoring_run_oncall(%s)", (at,)).fetchone()[0]


@pytest.fixture
def chain(conn):
    """The seed's chain with people the test can recognise: primary rotation (ana, bruno), manager, cto."""
    conn.execute("UPDATE monitoring_people SET name = 'ana' WHERE name = 'primary_engineer_1'")
    conn.execute("UPDATE monitoring_people SET name = 'bruno' WHERE name = 'primary_engineer_2'")
    conn.execute("UPDATE monitoring_people SET name = 'manager', slack_member_id = 'U0MANAGER' WHERE name = 'engineering_manager'")
    # T is a Monday after the 09:00 handoff: the rotation starts there, so ana is primary and bruno is next
    conn.execute("UPDATE monitoring_oncall_schedules SET rotation_start = %s WHERE name = 'primary'", (T.date(),))
    return conn


def test_ack_at_four_minutes_stops_at_the_primary(chain):
    alert = raise_critical(chain)
    assert notified(chain, alert) == [("ana",)]  # the primary is paged with the alert itself
    chain.execute("SELECT monitoring_acknowledge_alert(%s, 'ana', NULL, %s)", (alert, T + 4 * M))
    for minute in range(5, 70, 5):
        run(chain, T + minute * M)
    assert notified(chain, alert) == [("ana",)]
    assert chain.execute("SELECT finish_reason, level_reached FROM monitoring_alert_escalations").fetchone() == ("acknowledged", 1)


def test_no_ack_reaches_backup_manager_then_cto(chain):
    alert = raise_critical(chain)
    run(chain, T + 14 * M)
    assert notified(chain, alert) == [("ana",)]
    run(chain, T + 15 * M)
    assert notified(chain, alert)[-1] == ("bruno",)  # the next shift's person is the backup
    run(chain, T + 30 * M)
    assert notified(chain, alert)[-1] == ("manager",)
    run(chain, T + 45 * M)
    assert notified(chain, alert) == [("ana",), ("bruno",), ("manager",), ("cto",)]
    assert chain.execute("SELECT escalation_level FROM monitoring_sla_metrics WHERE alert_id = %s", (alert,)).fetchone() == (4,)
    mention = chain.execute("SELECT context FROM monitoring_deliveries WHERE context->>'person' = 'manager'").fetchone()[0]
    assert mention["slack_member_id"] == "U0MANAGER" and mention["level"] == 3


def test_a_page_goes_where_the_alerts_route_says_and_never_also_to_the_default_channel(chain):
    """A team's alert paged the team's Slack channel and the default one too (#22, 12)."""
    chain.execute("""
        INSERT INTO monitoring_providers (provider, kind, secret_refs) VALUES
          ('slack_payments', 'slack', '{"webhook_url": "env:SLACK_WEBHOOK_PAYMENTS"}'),
          ('teams_payments', 'teams', '{"webhook_url": "env:TEAMS_WEBHOOK_PAYMENTS"}');
        INSERT INTO monitoring_routes (alert_type, provider) VALUES
          ('payment_failure', 'pagerduty'), ('payment_failure', 'slack_payments'), ('payment_failure', 'teams_payments'),
          ('db_down', 'pagerduty');""")
    team_alert = raise_critical(chain)
    run(chain, T + 15 * M)
    pages = chain.execute("SELECT provider, context->>'person' FROM monitoring_deliveries "
                          "WHERE alert_id = %s AND action = 'notify' ORDER BY id", (team_alert,)).fetchall()
    assert pages == [("slack_payments", "ana"), ("teams_payments", "ana"), ("slack_payments", "bruno"), ("teams_payments", "bruno")]
    # an alert whose route reached no channel that takes pages still pages someone: on the default channel
    pager_only = chain.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down', p_at => %s)",
                               (T,)).fetchone()[0]
    assert chain.execute("SELECT provider FROM monitoring_deliveries WHERE alert_id = %s AND action = 'notify'",
                         (pager_only,)).fetchall() == [("slack",)]


def test_a_resolve_in_between_stops_everything(chain):
    alert = raise_critical(chain)
    run(chain, T + 15 * M)
    chain.execute("SELECT monitoring_resolve_alert(%s, 'x', NULL, false, %s)", (alert, T + 20 * M))
    run(chain, T + 60 * M)
    assert notified(chain, alert) == [("ana",), ("bruno",)]
    assert chain.execute("SELECT finish_reason FROM monitoring_alert_escalations").fetchone() == ("resolved",)


def test_acknowledge_and_resolve_end_the_escalation_at_once(chain, connect):
    """An acknowledged alert showed "Next: step 2 of default_critical in 14m", and On-call's "Escalating now" listed
    resolved ones, until the next step fell due (#36 item 3): the escalation ends in the acknowledging (or
    resolving) transaction, and the console's queries show only live ones."""
    acked = raise_critical(chain)
    resolved = chain.execute("SELECT monitoring_raise_alert('disk_full', 'critical', 'Disk full', p_at => %s)", (T,)).fetchone()[0]
    live = chain.execute("SELECT monitoring_raise_alert('queue_stuck', 'critical', 'Queue stuck', p_at => %s)", (T,)).fetchone()[0]
    chain.execute("SELECT monitoring_acknowledge_alert(%s, 'ana', NULL, %s)", (acked, T + 1 * M))
    chain.execute("SELECT monitoring_resolve_alert(%s, 'ana', NULL, false, %s)", (resolved, T + 2 * M))
    rows = chain.execute("SELECT alert_id, finished_at, finish_reason, next_step_at FROM monitoring_alert_escalations").fetchall()
    assert {row[0]: row[1:] for row in rows} == {acked: (T + 1 * M, "acknowledged", None),
                                                 resolved: (T + 2 * M, "resolved", None), live: (None, None, T + 15 * M)}
    queries = named_queries(QUERIES_FILE)
    console = connect("monitoring_console")
    console.row_factory = psycopg.rows.dict_row
    assert [e["id"] for e in console.execute(queries["escalating"])] == [live]
    for alert, expected in ((acked, None), (resolved, None), (live, ("step 2 of default_critical", "in 14m"))):
        escalations = console.execute(queries["alert_escalations"], {"alert_id": alert}).fetchall()
        assert views.next_escalation(escalations, T + 1 * M) == expected


def test_a_reopen_after_acknowledge_then_resolve_does_not_count_the_time_since_the_acknowledge(chain):
    alert = raise_critical(chain)
    chain.execute("SELECT monitoring_acknowledge_alert(%s, 'ana', NULL, %s)", (alert, T + 4 * M))
    chain.execute("SELECT monitoring_resolve_alert(%s, 'ana', NULL, false, %s)", (alert, T + 10 * M))
    assert chain.execute("SELECT finished_at, finish_reason FROM monitoring_alert_escalations").fetchone() == \
        (T + 4 * M, "acknowledged")  # it ended at the acknowledge; the resolve found nothing left to end
    chain.execute("SELECT _monitoring_reopen(%s, 'ana', %s, 'sql')", (alert, T + 20 * M))
    # paused from the acknowledge (4) to the reopen (20): the backup's 15 minutes are due at 31
    assert chain.execute("SELECT finish_reason, next_step_at FROM monitoring_alert_escalations").fetchone() == (None, T + 31 * M)
    run(chain, T + 30 * M)
    assert notified(chain, alert) == [("ana",)]
    run(chain, T + 31 * M)
    assert notified(chain, alert) == [("ana",), ("bruno",)]


def test_editing_the_policy_does_not_change_a_running_escalation(chain):
    alert = raise_critical(chain)
    chain.execute("DELETE FROM monitoring_escalation_steps WHERE step IN (3, 4)")
    chain.execute("UPDATE monitoring_escalation_steps SET delay = '1 minute' WHERE step = 2")
    run(chain, T + 2 * M)
    assert notified(chain, alert) == [("ana",)]  # still 15 minutes for the backup
    run(chain, T + 45 * M)
    assert notified(chain, alert) == [("ana",), ("bruno",), ("manager",), ("cto",)]
    chain.execute("SELECT monitoring_resolve_alert(%s, 'x', NULL, false, %s)", (alert, T + 100 * M))
    later = raise_critical(chain, T + 2 * 60 * M)  # a new alert: the old one is resolved
    run(chain, T + 2 * 60 * M + 2 * M)
    assert notified(chain, later) == [("ana",), ("bruno",)]  # a new alert takes the edited policy


def test_two_runs_at_the_same_minute_never_notify_a_step_twice(chain, connect):
    alert = raise_critical(chain)
    sessions = [connect() for _ in range(4)]
    barrier = threading.Barrier(4)

    def go(session):
        barrier.wait()
        with session.transaction():
            run(session, T + 15 * M)

    threads = [threading.Thread(target=go, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run(chain, T + 15 * M)
    assert notified(chain, alert) == [("ana",), ("bruno",)]


def test_a_run_racing_an_acknowledge_never_doubles(chain, connect):
    alert = raise_critical(chain)
    acker, cron = connect(), connect()
    with acker.transaction():
        acker.execute("SELECT monitoring_acknowledge_alert(%s, 'ana', NULL, %s)", (alert, T + 14 * M))
        racing = threading.Thread(target=run, args=(cron, T + 15 * M))
        racing.start()  # it waits on the acknowledging transaction, then finishes
        racing.join(0.5)
    racing.join(10)
    assert not racing.is_alive()
    run(cron, T + 15 * M)
    run(cron, T + 30 * M)
    # the backup may have been paged once, by the run that read the alert before the ack committed; never twice,
    # and nobody after the acknowledgement
    assert notified(chain, alert) in ([("ana",)], [("ana",), ("bruno",)])
    assert chain.execute("SELECT finish_reason FROM monitoring_alert_escalations").fetchone() == ("acknowledged",)


def test_repeats_then_raises_unacknowledged(chain):
    chain.execute("UPDATE monitoring_escalation_policies SET repeat_count = 1, repeat_after = '10 minutes'")
    alert = raise_critical(chain)
    run(chain, T + 45 * M)
    run(chain, T + 55 * M)  # the second cycle starts: the primary again
    assert len(notified(chain, alert)) == 5
    run(chain, T + 100 * M)  # second cycle done
    assert len(notified(chain, alert)) == 8
    assert chain.execute("SELECT count(*) FROM monitoring_alerts WHERE alert_type = 'pgalert_unacknowledged'").fetchone() == (0,)
    run(chain, T + 110 * M)
    row = chain.execute("SELECT severity, details->>'unacknowledged_alert_id' FROM monitoring_alerts WHERE alert_type = 'pgalert_unacknowledged'").fetchone()
    assert row == ("critical", str(alert))
    assert chain.execute("SELECT finish_reason FROM monitoring_alert_escalations WHERE alert_id = %s", (alert,)).fetchone() == ("exhausted",)


def test_one_run_moves_each_alert_by_its_own_clock(chain):
    early = raise_critical(chain)
    late = chain.execute("SELECT monitoring_raise_alert('disk_full', 'critical', 'Disk full', p_at => %s)",
                         (T + 10 * M,)).fetchone()[0]
    acked = chain.execute("SELECT monitoring_raise_alert('queue_stuck', 'critical', 'Queue stuck', p_at => %s)",
                          (T + 1 * M,)).fetchone()[0]
    chain.execute("SELECT monitoring_acknowledge_alert(%s, 'ana', NULL, %s)", (acked, T + 2 * M))
    # early: backup (15) and manager (30) are due; late: backup (25) is due; acked: finished, nobody paged
    assert run(chain, T + 31 * M) == 3
    assert notified(chain, early) == [("ana",), ("bruno",), ("manager",)]
    assert notified(chain, late) == [("ana",), ("bruno",)]
    assert notified(chain, acked) == [("ana",)]
    rows = chain.execute("SELECT alert_id, next_index, level_reached, next_step_at, finish_reason "
                         "FROM monitoring_alert_escalations").fetchall()
    assert {row[0]: row[1:] for row in rows} == {early: (3, 3, T + 45 * M, None), late: (2, 2, T + 40 * M, None),
                                                 acked: (1, 1, None, "acknowledged")}
    levels = dict(chain.execute("SELECT alert_id, escalation_level FROM monitoring_sla_metrics").fetchall())
    assert levels == {early: 3, late: 2, acked: 1}


def test_a_storm_in_one_insert_pages_the_primary_once_per_alert(chain):
    chain.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, created_at) "
                  "SELECT 'storm_' || g, 'critical', 'Storm', %s FROM generate_series(1, 200) AS g", (T,))
    pages = chain.execute("SELECT context->>'person', count(*), count(DISTINCT alert_id) FROM monitoring_deliveries "
                          "WHERE action = 'notify' AND provider = 'slack' GROUP BY 1").fetchall()
    assert pages == [("ana", 200, 200)]
    assert chain.execute("SELECT count(*) FROM monitoring_alert_escalations "
                         "WHERE next_index = 1 AND next_step_at = %s", (T + 15 * M,)).fetchone() == (200,)
    assert run(chain, T + 15 * M) == 200
    assert chain.execute("SELECT count(*) FROM monitoring_deliveries WHERE context->>'person' = 'bruno' "
                         "AND provider = 'slack'").fetchone() == (200,)


def test_only_assigned_alerts_escalate_and_type_beats_severity(conn):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('disk', 'warning', 't')")
    assert conn.execute("SELECT count(*) FROM monitoring_alert_escalations").fetchone() == (0,)
    with conn.transaction():
        conn.execute("INSERT INTO monitoring_escalation_policies (name) VALUES ('disk_policy')")
        conn.execute("INSERT INTO monitoring_escalation_steps SELECT p.id, 1, '0', 'person', NULL, pp.id FROM monitoring_escalation_policies p, "
                     "monitoring_people pp WHERE p.name = 'disk_policy' AND pp.name = 'cto'")
    conn.execute("INSERT INTO monitoring_escalation_assignments (alert_type, policy_id) SELECT 'payment_failure', id FROM monitoring_escalation_policies WHERE name = 'disk_policy'")
    alert = raise_critical(conn, dt.datetime.now(dt.UTC))
    assert conn.execute("SELECT policy_name FROM monitoring_alert_escalations WHERE alert_id = %s", (alert,)).fetchone() == ("disk_policy",)


def test_handoffs_are_announced_once(conn):
    make_schedule(conn, "rot", "UTC", ["a", "b"], start="2026-01-05")
    conn.execute("UPDATE monitoring_oncall_schedules SET announce_handoffs = name = 'rot'")
    monday = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
    assert conn.execute("SELECT handoffs_announced FROM monitoring_run_oncall(%s)", (monday - M,)).fetchone() == (0,)  # starts quietly
    assert conn.execute("SELECT handoffs_announced FROM monitoring_run_oncall(%s)", (monday + M,)).fetchone() == (1,)
    assert conn.execute("SELECT handoffs_announced FROM monitoring_run_oncall(%s)", (monday + 2 * M,)).fetchone() == (0,)
    title, status = conn.execute("SELECT title, status FROM monitoring_alerts WHERE alert_type = 'oncall_handoff'").fetchone()
    assert title == f"{on_call(conn, 'rot', monday + M)} is now on call for rot" and status == "resolved"
    assert conn.execute("SELECT provider, action FROM monitoring_deliveries").fetchall() == [("slack", "trigger")]
    assert conn.execute("SELECT count(*) FROM monitoring_sla_metrics").fetchone() == (0,)  # not an incident


def test_a_call_at_an_earlier_time_does_not_announce_a_handoff_again(conn):
    make_schedule(conn, "rot", "UTC", ["ana", "bruno"])
    conn.execute("UPDATE monitoring_oncall_schedules SET announce_handoffs = name = 'rot'")
    monday = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    conn.execute("SELECT monitoring_run_oncall(%s)", (monday - M,))  # starts quietly
    for at in (monday + M, monday - dt.timedelta(days=8), monday + 2 * M, monday - dt.timedelta(days=8), monday + 3 * M):
        conn.execute("SELECT monitoring_run_oncall(%s)", (at,))
    assert conn.execute("SELECT count(*) FROM monitoring_alerts WHERE alert_type = 'oncall_handoff'").fetchone() == (1,)


@pytest.mark.parametrize(("length", "said"), [("12 hours", "is not a whole number of days"), ("1 day 2 hours", "is not a whole number of days"),
                                              ("1 mon", "is not a whole number of days")])
def test_a_rotation_that_is_not_whole_days_is_refused_with_a_sentence(connect, length, said):
    admin = connect("monitoring_admin")
    with pytest.raises(psycopg.errors.CheckViolation, match=said) as refused:
        admin.execute("INSERT INTO monitoring_oncall_schedules (name, rotation_length) VALUES ('s', %s)", (length,))
    assert "rotation_is_whole_days" not in str(refused.value)


def test_overrides_are_added_with_a_sentence_for_every_mistake(connect):
    admin = connect("monitoring_admin")
    first = admin.execute("SELECT monitoring_add_override('primary', 'primary_engineer_2', '2026-03-02 09:00Z', "
                          "'2026-03-03 09:00Z', 'swap')").fetchone()[0]
    assert admin.execute("SELECT person FROM monitoring_who_is_on_call('primary', '2026-03-02 12:00Z')").fetchone() == ("primary_engineer_2",)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="an override ends after it starts"):
        admin.execute("SELECT monitoring_add_override('primary', 'primary_engineer_1', '2026-03-05', '2026-03-04')")
    with pytest.raises(psycopg.errors.ExclusionViolation, match=f"already has override {first} \\(primary_engineer_2"):
        admin.execute("SELECT monitoring_add_override('primary', 'primary_engineer_1', '2026-03-02 20:00Z', '2026-03-04')")
    with pytest.raises(psycopg.errors.NoDataFound, match="person 'nobody' does not exist"):
        admin.execute("SELECT monitoring_add_override('primary', 'nobody', '2026-04-01', '2026-04-02')")
    with pytest.raises(psycopg.errors.CheckViolation, match="an override needs a start and a later end"):
        admin.execute("INSERT INTO monitoring_oncall_overrides (schedule_id, person_id, during) "
                      "SELECT s.id, p.id, tstzrange('2026-05-01', '2026-05-01') FROM monitoring_oncall_schedules s, monitoring_people p LIMIT 1")
