"""Silences, maintenance windows and inhibition, with explicit times: what is held, when it is released, and the
invariant that a resolve of an alert whose trigger went out is never swallowed."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from dispatcher.db import named_queries

T = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
M = dt.timedelta(minutes=1)
ROOT = Path(__file__).resolve().parents[2]
DEGRADED = [{"field": "alert_type", "op": "=", "value": "api_response_degradation"}]


def raise_alert(conn, alert_type="api_response_degradation", at=T, severity="critical", details=None, dedup=None):
    return conn.execute("SELECT monitoring_raise_alert(%s, %s, 'title', p_dedup_key => %s, p_details => %s, p_at => %s)",
                        (alert_type, severity, dedup, Jsonb(details or {}), at)).fetchone()[0]


def triggers(conn, alert_id):
    return dict(conn.execute("SELECT provider, status FROM monitoring_deliveries WHERE alert_id = %s AND action = 'trigger'",
                             (alert_id,)).fetchall())


def silence(conn, matchers=DEGRADED, start=T - 5 * M, end=T + 60 * M, comment="deploy of api 4.2"):
    return conn.execute("SELECT monitoring_create_silence(%s, %s, %s, %s)", (Jsonb(matchers), end, comment, start)).fetchone()[0]


def send(conn, alert_id):
    """The dispatcher sent what was due for the alert."""
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', completed_at = now(), attempts = 1 "
                 "WHERE alert_id = %s AND status = 'pending'", (alert_id,))


def test_a_silenced_alert_is_stored_counted_and_deduplicated_but_not_sent(conn):
    silence(conn)
    alert = raise_alert(conn)
    assert triggers(conn, alert) == {"pagerduty": "held", "slack": "held", "sentry": "held"}
    assert raise_alert(conn, at=T + M) == alert  # a repeat merges as ever
    assert conn.execute("SELECT occurrence_count FROM monitoring_alerts").fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM monitoring_sla_metrics").fetchone() == (1,)
    assert conn.execute("SELECT reason, held_by, held_at FROM monitoring_notification_holds").fetchone() == ("silence", "silence 1", T)
    # another type is not silenced
    assert set(triggers(conn, raise_alert(conn, "payment_failure")).values()) == {"pending"}
    assert conn.execute("SELECT held FROM monitoring_delivery_queue WHERE provider = 'pagerduty'").fetchone() == (3 - 2,)


def test_when_the_silence_ends_an_alert_still_open_is_notified_then(conn):
    silence(conn, end=T + 30 * M)
    alert = raise_alert(conn)
    assert conn.execute("SELECT monitoring_release_holds(%s)", (T + 29 * M,)).fetchone() == (0,)
    assert set(triggers(conn, alert).values()) == {"held"}
    assert conn.execute("SELECT monitoring_release_holds(%s)", (T + 30 * M,)).fetchone() == (1,)
    assert set(triggers(conn, alert).values()) == {"pending"}
    assert conn.execute("SELECT released_at, release_reason FROM monitoring_notification_holds").fetchone() == (T + 30 * M, "ended")


def test_expiring_a_silence_early_notifies_at_once_and_keeps_it_for_history(connect):
    admin = connect("monitoring_admin")
    silence_id = admin.execute("SELECT monitoring_create_silence(%s, now() + interval '1 hour', 'maintenance')",
                               (Jsonb(DEGRADED),)).fetchone()[0]
    alert = admin.execute("SELECT monitoring_raise_alert('api_response_degradation', 'warning', 't')").fetchone()[0]
    assert set(triggers(admin, alert).values()) == {"held"}
    assert admin.execute("SELECT monitoring_expire_silence(%s)", (silence_id,)).fetchone() == (True,)
    assert set(triggers(admin, alert).values()) == {"pending"}
    assert admin.execute("SELECT monitoring_expire_silence(%s)", (silence_id,)).fetchone() == (False,)
    assert admin.execute("SELECT expired_by IS NOT NULL FROM monitoring_silences").fetchone() == (True,)


def test_a_silence_names_the_login_that_made_and_ended_it_and_has_a_longest_life(conn, connect):
    """An admin could set created_by to anyone and make a silence last 100 years (#22, 16)."""
    admin = connect("monitoring_admin")
    login = admin.execute("SELECT session_user").fetchone()[0]
    forged = admin.execute("INSERT INTO monitoring_silences (matchers, ends_at, comment, created_by) "
                           "VALUES (%s, now() + interval '1 hour', 'x', 'the CEO') RETURNING id", (Jsonb(DEGRADED),)).fetchone()[0]
    plain = admin.execute("SELECT monitoring_create_silence(%s, now() + interval '1 hour', 'deploy')", (Jsonb(DEGRADED),)).fetchone()[0]
    # the owner alone may UPDATE a silence, and even it cannot rewrite who made one
    conn.execute("UPDATE monitoring_silences SET created_by = 'someone else', comment = 'y' WHERE id = %s", (plain,))
    admin.execute("SELECT monitoring_expire_silence(%s, 'night shift')", (forged,))
    assert admin.execute("SELECT id, created_by, expired_by FROM monitoring_silences ORDER BY id").fetchall() == [
        (forged, f"{login} for the CEO", f"{login} for night shift"), (plain, login, None)]
    window = admin.execute("INSERT INTO monitoring_maintenance_windows (name, matchers, starts_at, ends_at, created_by) "
                           "VALUES ('w', %s, now(), now() + interval '1 hour', 'nobody') RETURNING created_by", (Jsonb(DEGRADED),)).fetchone()
    assert window == (f"{login} for nobody",)
    for statement in ("SELECT monitoring_create_silence(%s, now() + interval '100 years', 'forever')",
                      "INSERT INTO monitoring_silences (matchers, ends_at, comment) VALUES (%s, now() + interval '31 days', 'x')"):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="at most 30 days from now"):
            admin.execute(statement, (Jsonb(DEGRADED),))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="maintenance window"):
        conn.execute("UPDATE monitoring_silences SET ends_at = now() + interval '1 year' WHERE id = %s", (plain,))
    admin.execute("UPDATE monitoring_settings SET value = '90 days' WHERE setting = 'silence_max_duration'")
    admin.execute("SELECT monitoring_create_silence(%s, now() + interval '60 days', 'long migration')", (Jsonb(DEGRADED),))


def test_an_alert_resolved_while_held_is_never_sent_nor_its_resolve(conn):
    silence(conn)
    alert = raise_alert(conn)
    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice', NULL, false, %s)", (alert, T + 5 * M))
    assert set(triggers(conn, alert).values()) == {"skipped"}
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE action = 'resolve'").fetchone() == (0,)
    assert conn.execute("SELECT last_error FROM monitoring_deliveries LIMIT 1").fetchone() == \
        ("not sent: resolved while its notification was held",)
    assert conn.execute("SELECT release_reason FROM monitoring_notification_holds").fetchone() == ("resolved",)
    assert conn.execute("SELECT monitoring_release_holds(%s)", (T + 90 * M,)).fetchone() == (0,)


def test_an_alert_acknowledged_while_held_is_not_paged_when_the_silence_ends(conn):
    silence(conn, end=T + 30 * M)
    alert = raise_alert(conn)
    conn.execute("SELECT monitoring_acknowledge_alert(%s, 'alice', NULL, %s)", (alert, T + 5 * M))
    conn.execute("SELECT monitoring_release_holds(%s)", (T + 31 * M,))
    assert set(triggers(conn, alert).values()) == {"skipped"}
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE action <> 'trigger'").fetchone() == (0,)


@pytest.mark.escalation
def test_a_held_alert_pages_no_one_on_call_until_it_is_released(conn):
    conn.execute("UPDATE monitoring_oncall_schedules SET rotation_start = %s WHERE name = 'primary'", (T.date(),))
    silence(conn, matchers=[{"field": "severity", "op": "=", "value": "critical"}], end=T + 30 * M)
    alert = raise_alert(conn)
    conn.execute("SELECT monitoring_run_oncall(%s)", (T + 20 * M,))
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE action = 'notify'").fetchone() == (0,)
    conn.execute("SELECT monitoring_release_holds(%s)", (T + 30 * M,))
    # the primary is paged with the released alert, and the backup 15 minutes after that, not after the INSERT
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE action = 'notify' AND provider = 'slack'").fetchone() == (1,)
    conn.execute("SELECT monitoring_run_oncall(%s)", (T + 44 * M,))
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE action = 'notify' AND provider = 'slack'").fetchone() == (1,)
    conn.execute("SELECT monitoring_run_oncall(%s)", (T + 45 * M,))
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE action = 'notify' AND provider = 'slack'").fetchone() == (2,)
    assert alert


def slack_pages(conn, alert_id):
    """The escalation levels that paged someone in Slack for the alert, in order."""
    return [int(level) for (level,) in conn.execute(
        "SELECT context ->> 'level' FROM monitoring_deliveries WHERE alert_id = %s AND action = 'notify' "
        "AND provider = 'slack' ORDER BY id", (alert_id,)).fetchall()]


@pytest.mark.escalation
def test_a_silence_holds_an_alert_already_paging_and_its_escalation_resumes_where_it_stood(conn):
    """A critical alert paged, then silenced, still paged level 2 sixteen minutes later (#36 item 1)."""
    conn.execute("UPDATE monitoring_oncall_schedules SET rotation_start = %s WHERE name = 'primary'", (T.date(),))
    alert = raise_alert(conn)
    send(conn, alert)
    assert slack_pages(conn, alert) == [1]  # the primary, with the alert; level 2 is due at T+15
    silence_id = silence(conn, start=T + 10 * M, end=T + 40 * M)
    assert conn.execute("SELECT reason, cause_id, held_at FROM monitoring_notification_holds WHERE alert_id = %s "
                        "AND released_at IS NULL", (alert,)).fetchall() == [("silence", silence_id, T + 10 * M)]
    conn.execute("SELECT monitoring_run_oncall(%s)", (T + 16 * M,))
    assert slack_pages(conn, alert) == [1]
    # its triggers went out before the silence: nothing is sent again when it ends, and the escalation resumes
    # where it stood, the 30 silenced minutes not counted: level 2 was 5 minutes away
    assert conn.execute("SELECT monitoring_release_holds(%s)", (T + 40 * M,)).fetchone() == (1,)
    assert set(triggers(conn, alert).values()) == {"succeeded"}
    conn.execute("SELECT monitoring_run_oncall(%s)", (T + 44 * M,))
    assert slack_pages(conn, alert) == [1]
    conn.execute("SELECT monitoring_run_oncall(%s)", (T + 45 * M,))
    assert slack_pages(conn, alert) == [1, 2]


@pytest.mark.escalation
def test_a_maintenance_window_that_opens_holds_an_open_alert_from_the_minute_it_opens(conn):
    conn.execute("UPDATE monitoring_oncall_schedules SET rotation_start = %s WHERE name = 'primary'", (T.date(),))
    alert = raise_alert(conn)
    send(conn, alert)
    conn.execute("INSERT INTO monitoring_maintenance_windows (name, matchers, starts_at, ends_at) VALUES "
                 "('db_upgrade', %s, %s, %s)", (Jsonb(DEGRADED), T + 10 * M, T + 20 * M))
    conn.execute("SELECT monitoring_release_holds(%s)", (T + 9 * M,))
    assert conn.execute("SELECT count(*) FROM monitoring_notification_holds").fetchone() == (0,)
    conn.execute("SELECT monitoring_release_holds(%s)", (T + 10 * M,))  # pg_cron's minute: the window is open
    assert conn.execute("SELECT reason, held_at FROM monitoring_notification_holds WHERE released_at IS NULL"
                        ).fetchall() == [("maintenance", T + 10 * M)]
    conn.execute("SELECT monitoring_run_oncall(%s)", (T + 16 * M,))
    assert slack_pages(conn, alert) == [1]
    conn.execute("SELECT monitoring_release_holds(%s)", (T + 20 * M,))
    conn.execute("SELECT monitoring_run_oncall(%s)", (T + 24 * M,))
    assert slack_pages(conn, alert) == [1]
    conn.execute("SELECT monitoring_run_oncall(%s)", (T + 25 * M,))  # T+15, plus the 10 minutes held
    assert slack_pages(conn, alert) == [1, 2]


def test_a_silence_of_a_sent_alert_holds_what_is_unsent_and_never_its_resolve(conn):
    sent = raise_alert(conn)
    send(conn, sent)
    unsent = raise_alert(conn, alert_type="api_response_degradation", dedup="other", at=T + M)
    silence(conn, start=T + 10 * M, end=T + 40 * M)
    assert set(triggers(conn, unsent).values()) == {"held"}  # not yet sent: it waits for the silence to end
    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice', NULL, false, %s)", (sent, T + 20 * M))
    assert dict(conn.execute("SELECT provider, status FROM monitoring_deliveries WHERE alert_id = %s "
                             "AND action = 'resolve'", (sent,)).fetchall()) == {"pagerduty": "pending", "slack": "pending"}
    conn.execute("SELECT monitoring_release_holds(%s)", (T + 40 * M,))
    assert set(triggers(conn, unsent).values()) == {"pending"}


@pytest.mark.escalation
def test_what_a_silence_holds_is_one_answer_everywhere(conn):
    """The preview, the silence's count (console and CLI), the alert's hold badge and the escalation agree: the
    open alerts the silence matches (#36 item 1). A silence made now holds from now: the database's clock."""
    console = named_queries(ROOT / "dispatcher" / "console" / "queries.sql")
    cli = named_queries(ROOT / "dispatcher" / "commands.sql")

    def raised(dedup, alert_type="api_response_degradation"):
        alert = conn.execute("SELECT monitoring_raise_alert(%s, 'critical', 't', p_dedup_key => %s)",
                             (alert_type, dedup)).fetchone()[0]
        send(conn, alert)
        return alert

    paging, queued, acknowledged, resolved = raised("a"), raised("b"), raised("c"), raised("d")
    other = raised("e", alert_type="payment_failure")
    conn.execute("SELECT monitoring_acknowledge_alert(%s, 'alice')", (acknowledged,))
    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice')", (resolved,))
    preview = {a for (a,) in conn.execute("SELECT alert_id FROM monitoring_silence_preview(%s)", (Jsonb(DEGRADED),))}
    assert preview == {paging, queued}
    silence_id = conn.execute("SELECT monitoring_create_silence(%s, now() + interval '1 hour', 'deploy')",
                              (Jsonb(DEGRADED),)).fetchone()[0]
    badges = {row["id"] for row in conn.cursor(row_factory=dict_row).execute(console["alerts"], {
        "status": "active", "severity": None, "alert_type": None, "source": None, "label_key": None,
        "label_value": None, "q": None, "limit": 100}) if row["holds"]}
    held = {a for (a,) in conn.execute("SELECT alert_id FROM monitoring_notification_holds WHERE released_at IS NULL "
                                       "AND reason = 'silence' AND cause_id = %s", (silence_id,))}
    assert held == preview
    [cli_count] = [row[-1] for row in conn.execute(cli["list_silences"], {"show_all": False}) if row[0] == silence_id]
    [console_count] = [row[-1] for row in conn.execute(console["silences"]) if row[0] == silence_id]
    assert cli_count == console_count == len(preview)
    assert badges == preview
    escalating = {a for (a,) in conn.execute(
        "SELECT alert_id FROM monitoring_alert_escalations WHERE finished_at IS NULL AND NOT EXISTS ("
        " SELECT FROM monitoring_notification_holds AS h WHERE h.alert_id = monitoring_alert_escalations.alert_id"
        " AND h.released_at IS NULL)")}
    assert escalating & preview == set() and other in escalating
    conn.execute("SELECT monitoring_run_oncall(now() + interval '16 minutes')")
    assert [len(slack_pages(conn, a)) for a in (paging, queued, other)] == [1, 1, 2]


@pytest.mark.parametrize(("matchers", "details", "held"), [
    ([{"field": "alert_type", "op": "=~", "value": "api_.*"}], {}, True),
    ([{"field": "alert_type", "op": "=~", "value": "api"}], {}, False),  # anchored: the whole value
    ([{"field": "alert_type", "op": "!~", "value": "payment_.*"}], {}, True),
    ([{"field": "severity", "op": "!=", "value": "critical"}], {}, False),
    ([{"field": "labels.env", "op": "=", "value": "staging"}], {"labels": {"env": "staging"}}, True),
    ([{"field": "labels.env", "op": "=", "value": "staging"}], {"labels": {"env": "prod"}}, False),
    ([{"field": "details.region", "op": "=", "value": "eu"}], {"region": "eu"}, True),
    ([{"field": "labels.team", "op": "=", "value": ""}], {}, True),  # a missing label is the empty string
    ([{"field": "alert_type", "op": "=", "value": "api_response_degradation"},
      {"field": "labels.env", "op": "=", "value": "staging"}], {"labels": {"env": "prod"}}, False),  # all must match
])
def test_matchers(conn, matchers, details, held):
    silence(conn, matchers=matchers)
    alert = raise_alert(conn, details=details)
    assert (set(triggers(conn, alert).values()) == {"held"}) is held


@pytest.mark.parametrize(("matchers", "message"), [
    ([], "non-empty JSON array"),
    ({"field": "alert_type"}, "non-empty JSON array"),
    ([{"field": "title", "op": "=", "value": "x"}], "not {field, op, value}"),
    ([{"field": "alert_type", "op": "~", "value": "x"}], "not {field, op, value}"),
    ([{"field": "alert_type", "op": "=", "value": 5}], "not {field, op, value}"),
    ([{"field": "alert_type", "op": "=~", "value": "(unclosed"}], "does not compile"),
])
def test_bad_matchers_are_refused_when_saved(conn, matchers, message):
    with pytest.raises(psycopg.Error, match=message):
        silence(conn, matchers=matchers)
    assert conn.execute("SELECT count(*) FROM monitoring_silences").fetchone() == (0,)


def test_a_silence_says_why_and_ends_after_it_starts(conn):
    with pytest.raises(psycopg.errors.CheckViolation, match="silence_says_why"):
        silence(conn, comment=" ")
    with pytest.raises(psycopg.errors.CheckViolation, match="silence_ends_after_it_starts"):
        silence(conn, start=T, end=T)


def weekly(conn, zone, days, start, duration, name="weekly"):
    conn.execute("INSERT INTO monitoring_maintenance_windows (name, matchers, time_zone, days_of_week, start_time, duration) "
                 "VALUES (%s, %s, %s, %s, %s, %s)", (name, Jsonb(DEGRADED), zone, days, start, duration))


def window_open(conn, at, name="weekly"):
    return conn.execute("SELECT _monitoring_window_is_open(w, %s) FROM monitoring_maintenance_windows AS w WHERE name = %s",
                        (at, name)).fetchone()[0]


def test_a_weekly_window_keeps_its_wall_clock_across_daylight_saving(conn):
    weekly(conn, "Europe/Berlin", [7], "02:00", "2 hours")  # every Sunday 02:00-04:00 in Berlin
    summer, winter = dt.datetime(2026, 7, 5, tzinfo=dt.UTC), dt.datetime(2026, 12, 6, tzinfo=dt.UTC)  # Sundays
    assert window_open(conn, summer + dt.timedelta(hours=0, minutes=30))  # 02:30 CEST = 00:30 UTC
    assert not window_open(conn, summer + dt.timedelta(hours=2, minutes=30))  # 04:30 CEST
    assert not window_open(conn, winter + dt.timedelta(minutes=30))  # 01:30 CET
    assert window_open(conn, winter + dt.timedelta(hours=2, minutes=30))  # 03:30 CET
    assert not window_open(conn, winter + dt.timedelta(days=1, hours=2))  # a Monday


def test_a_window_may_cross_midnight_and_a_one_off_window_is_a_range(conn):
    weekly(conn, "America/Sao_Paulo", [6], "23:00", "3 hours")  # Saturday 23:00 to Sunday 02:00, UTC-3
    sunday_0130_local = dt.datetime(2026, 11, 29, 4, 30, tzinfo=dt.UTC)
    assert window_open(conn, sunday_0130_local) and not window_open(conn, sunday_0130_local + 60 * M)
    conn.execute("INSERT INTO monitoring_maintenance_windows (name, matchers, starts_at, ends_at) VALUES ('db_upgrade', %s, %s, %s)",
                 (Jsonb(DEGRADED), T, T + 120 * M))
    assert window_open(conn, T, "db_upgrade") and not window_open(conn, T + 120 * M, "db_upgrade")
    with pytest.raises(psycopg.errors.CheckViolation, match="window_is_one_off_or_weekly"):
        conn.execute("INSERT INTO monitoring_maintenance_windows (name, matchers, starts_at, ends_at, days_of_week) "
                     "VALUES ('both', %s, %s, %s, '{1}')", (Jsonb(DEGRADED), T, T + M))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="Mars"):
        weekly(conn, "Mars/Olympus", [1], "02:00", "1 hour", name="mars")


def test_renaming_a_window_or_an_inhibit_rule_while_it_holds_keeps_the_hold(conn):
    """A hold was matched to its cause by its label: renaming the window or rule ended its holds at the next
    release, and the alerts paged in the middle of the maintenance."""
    conn.execute("INSERT INTO monitoring_maintenance_windows (name, matchers, starts_at, ends_at) VALUES ('db_upgrade', %s, %s, %s)",
                 (Jsonb(DEGRADED), T - 10 * M, T + 50 * M))
    in_window = raise_alert(conn)
    payments = [{"field": "alert_type", "op": "=", "value": "payment_failure"}]
    database = [{"field": "alert_type", "op": "=", "value": "database_connection_failure"}]
    conn.execute("INSERT INTO monitoring_inhibit_rules (name, source_matchers, target_matchers) VALUES ('db_hides_payments', %s, %s)",
                 (Jsonb(database), Jsonb(payments)))
    raise_alert(conn, "database_connection_failure", at=T + M)
    inhibited = raise_alert(conn, "payment_failure", at=T + 2 * M)
    conn.execute("UPDATE monitoring_maintenance_windows SET name = 'database_upgrade'")
    conn.execute("UPDATE monitoring_inhibit_rules SET name = 'database_hides_payments'")
    assert conn.execute("SELECT monitoring_release_holds(%s)", (T + 3 * M,)).fetchone() == (0,)
    assert set(triggers(conn, in_window).values()) == set(triggers(conn, inhibited).values()) == {"held"}
    assert conn.execute("SELECT monitoring_release_holds(%s)", (T + 50 * M,)).fetchone() == (1,)  # the window ends
    assert set(triggers(conn, in_window).values()) == {"pending"}


def test_an_alert_raised_in_a_maintenance_window_is_notified_when_it_ends_if_still_open(conn):
    conn.execute("INSERT INTO monitoring_maintenance_windows (name, matchers, starts_at, ends_at) VALUES ('db_upgrade', %s, %s, %s)",
                 (Jsonb(DEGRADED), T - 10 * M, T + 50 * M))
    alert = raise_alert(conn)
    assert conn.execute("SELECT held_by FROM monitoring_notification_holds").fetchone() == ("maintenance window db_upgrade",)
    assert conn.execute("SELECT monitoring_release_holds(%s)", (T + 50 * M,)).fetchone() == (1,)
    assert set(triggers(conn, alert).values()) == {"pending"}


def inhibit(conn, equal=("labels.env",)):
    conn.execute("INSERT INTO monitoring_inhibit_rules (name, source_matchers, target_matchers, equal) VALUES "
                 "('db_down_hides_api', %s, %s, %s)",
                 (Jsonb([{"field": "alert_type", "op": "=", "value": "database_connection_failure"}]), Jsonb(DEGRADED), list(equal)))


def test_an_open_database_alert_inhibits_api_alerts_of_the_same_environment_until_it_resolves(conn):
    inhibit(conn)
    db = raise_alert(conn, "database_connection_failure", details={"labels": {"env": "prod"}})
    api_prod = raise_alert(conn, details={"labels": {"env": "prod"}}, dedup="api-prod")
    api_staging = raise_alert(conn, details={"labels": {"env": "staging"}}, dedup="api-staging")
    assert set(triggers(conn, db).values()) == {"pending"}
    assert set(triggers(conn, api_prod).values()) == {"held"}
    assert set(triggers(conn, api_staging).values()) == {"pending"}  # equal: env differs
    assert conn.execute("SELECT held_by FROM monitoring_notification_holds").fetchone() == (f"inhibit rule db_down_hides_api: alert {db}",)
    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice', NULL, false, %s)", (db, T + 10 * M))
    assert set(triggers(conn, api_prod).values()) == {"pending"}  # released by the resolve itself


def test_an_alert_on_both_sides_cannot_inhibit_itself_or_its_like(conn):
    conn.execute("INSERT INTO monitoring_inhibit_rules (name, source_matchers, target_matchers) VALUES ('both', %s, %s)",
                 (Jsonb([{"field": "severity", "op": "=", "value": "critical"}]), Jsonb([{"field": "alert_type", "op": "=~", "value": ".*"}])))
    first = raise_alert(conn, "a")
    second = raise_alert(conn, "b")  # matches both sides, as does the first: not inhibited
    assert set(triggers(conn, first).values()) == {"pending"} and set(triggers(conn, second).values()) == {"pending"}
    warning = raise_alert(conn, "c", severity="warning")  # target only: inhibited by the open criticals
    assert set(triggers(conn, warning).values()) == {"held"}


def sources(conn) -> set[tuple]:
    return {(name, alert, tuple(values)) for name, alert, values in conn.execute(
        "SELECT r.name, s.alert_id, s.equal_values FROM monitoring_inhibit_sources AS s "
        "JOIN monitoring_inhibit_rules AS r ON r.id = s.rule_id").fetchall()}


def rebuilt(conn) -> set[tuple]:
    """What the sources would be if built from scratch: the kept set must always be this."""
    with conn.transaction(force_rollback=True):
        conn.execute("SELECT monitoring_rebuild_inhibit_sources()")
        return sources(conn)


def test_a_source_chosen_by_a_label_is_kept_current_through_its_life_and_the_rules(conn):
    """Sources are found by index (migration 0031), never by scanning open alerts: the kept set follows every
    change of an alert and of a rule, and equals a rebuild from scratch after each."""
    conn.execute("INSERT INTO monitoring_inhibit_rules (name, source_matchers, target_matchers, equal) VALUES "
                 "('cluster_down', %s, %s, '{labels.cluster}')",
                 (Jsonb([{"field": "labels.role", "op": "=~", "value": "control-?plane"}]), Jsonb(DEGRADED)))
    plain = raise_alert(conn, "node_down", details={"labels": {"cluster": "eu1"}}, dedup="node")
    assert sources(conn) == set() == rebuilt(conn)
    # a repeat that brings the label makes it a source, with its cluster
    raise_alert(conn, "node_down", details={"labels": {"cluster": "eu1", "role": "controlplane"}}, dedup="node", at=T + M)
    assert sources(conn) == {("cluster_down", plain, ("eu1",))} == rebuilt(conn)
    held = raise_alert(conn, details={"labels": {"cluster": "eu1"}}, dedup="api-eu1", at=T + 2 * M)
    free = raise_alert(conn, details={"labels": {"cluster": "us1"}}, dedup="api-us1", at=T + 2 * M)
    assert set(triggers(conn, held).values()) == {"held"} and set(triggers(conn, free).values()) == {"pending"}
    # resolved, it inhibits no more (and what it held goes out); reopened, it is a source again
    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice', NULL, false, %s)", (plain, T + 3 * M))
    assert sources(conn) == set() == rebuilt(conn) and set(triggers(conn, held).values()) == {"pending"}
    conn.execute("SELECT monitoring_acknowledge_alert(%s, 'alice', NULL, %s)", (held, T + 3 * M))
    conn.execute("SELECT _monitoring_reopen(%s, 'pagerduty', %s, 'pagerduty')", (plain, T + 4 * M))
    assert sources(conn) == {("cluster_down", plain, ("eu1",))} == rebuilt(conn)
    # a rule changed or disabled finds its sources again
    conn.execute("UPDATE monitoring_inhibit_rules SET equal = '{labels.cluster,labels.env}'")
    assert sources(conn) == {("cluster_down", plain, ("eu1", ""))} == rebuilt(conn)
    conn.execute("UPDATE monitoring_inhibit_rules SET enabled = false")
    assert sources(conn) == set() == rebuilt(conn)
    conn.execute("UPDATE monitoring_inhibit_rules SET enabled = true")
    assert sources(conn) == {("cluster_down", plain, ("eu1", ""))} == rebuilt(conn)
    conn.execute("DELETE FROM monitoring_inhibit_rules")
    assert sources(conn) == set()


def test_the_alerts_of_one_statement_are_each_others_sources(conn):
    inhibit(conn)
    db, api = conn.execute(
        "INSERT INTO monitoring_alerts (alert_type, severity, title, details, dedup_key) VALUES "
        "('database_connection_failure', 'critical', 'db', '{\"labels\": {\"env\": \"prod\"}}', 'db'), "
        "('api_response_degradation', 'critical', 'api', '{\"labels\": {\"env\": \"prod\"}}', 'api') RETURNING id"
    ).fetchall()
    assert set(triggers(conn, api[0]).values()) == {"held"} and set(triggers(conn, db[0]).values()) == {"pending"}


CAUSES = ["silence", "maintenance", "inhibition"]


def start_cause(conn, cause, at, until):
    if cause == "silence":
        silence(conn, start=at, end=until)
    elif cause == "maintenance":
        conn.execute("INSERT INTO monitoring_maintenance_windows (name, matchers, starts_at, ends_at) VALUES ('w', %s, %s, %s)",
                     (Jsonb(DEGRADED), at, until))
    else:
        inhibit(conn, equal=())
        return raise_alert(conn, "database_connection_failure", at=at)
    return None


def end_cause(conn, cause, source, at):
    if cause == "inhibition":
        conn.execute("SELECT monitoring_resolve_alert(%s, 'ops', NULL, false, %s)", (source, at))
    conn.execute("SELECT monitoring_release_holds(%s)", (at,))


@pytest.mark.parametrize("cause", CAUSES)
@pytest.mark.parametrize("starts", ["before_trigger", "after_trigger"])
@pytest.mark.parametrize("ends", ["before_resolve", "after_resolve"])
def test_a_resolve_is_never_swallowed(conn, cause, starts, ends):
    """For every cause, starting before or after the trigger and ending before or after the resolve: every
    provider that was sent the trigger is sent the resolve, and none that was not."""
    cause_start = T - 5 * M if starts == "before_trigger" else T + 5 * M
    cause_end = T + 20 * M if ends == "before_resolve" else T + 60 * M
    source = None
    if starts == "before_trigger":
        source = start_cause(conn, cause, cause_start, cause_end)
    alert = raise_alert(conn, at=T)
    send(conn, alert)
    if starts == "after_trigger":
        source = start_cause(conn, cause, cause_start, cause_end)
    if ends == "before_resolve":
        end_cause(conn, cause, source, cause_end)
        send(conn, alert)
    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice', NULL, false, %s)", (alert, T + 30 * M))
    if ends == "after_resolve":
        end_cause(conn, cause, source, cause_end)
    sent = {p for p, s in triggers(conn, alert).items() if s == "succeeded"}
    resolves = dict(conn.execute("SELECT provider, status FROM monitoring_deliveries WHERE alert_id = %s AND action = 'resolve'",
                                 (alert,)).fetchall())
    resolvable = {p for (p,) in conn.execute("SELECT provider FROM monitoring_providers WHERE 'resolve' = ANY (actions)")}
    assert set(resolves) == sent & resolvable and set(resolves.values()) <= {"pending"}
    held_then_resolved = starts == "before_trigger" and ends == "after_resolve"
    assert (sent == set()) is held_then_resolved


def test_two_sessions_releasing_at_once_release_each_alert_once(conn, connect):
    silence(conn, end=T + 30 * M)
    alert = raise_alert(conn)
    first, second = connect(), connect()
    first.execute("BEGIN")
    assert first.execute("SELECT monitoring_release_holds(%s)", (T + 31 * M,)).fetchone() == (1,)
    result: list[int] = []
    racer = threading.Thread(target=lambda: result.append(
        second.execute("SELECT monitoring_release_holds(%s)", (T + 31 * M,)).fetchone()[0]))
    racer.start()
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND datname = current_database() AND query LIKE '%monitoring_release_holds%'").fetchone()[0] < 1:
        threading.Event().wait(0.01)  # until the second session waits on the first's locks
    first.execute("COMMIT")
    racer.join(10)
    assert result == [0]
    assert set(triggers(conn, alert).values()) == {"pending"}
    assert conn.execute("SELECT count(*), count(released_at) FROM monitoring_notification_holds").fetchone() == (1, 1)


def test_who_may_silence(connect):
    for role in ("monitoring_writer", "monitoring_reader", "monitoring_dispatcher", "monitoring_inbound"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connect(role).execute("SELECT monitoring_create_silence(%s, now() + interval '1 hour', 'x')", (Jsonb(DEGRADED),))
    admin = connect("monitoring_admin")
    admin.execute("SELECT monitoring_create_silence(%s, now() + interval '1 hour', 'x')", (Jsonb(DEGRADED),))
    assert connect("monitoring_reader").execute("SELECT count(*) FROM monitoring_silences").fetchone() == (1,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        admin.execute("DELETE FROM monitoring_silences")  # history is kept: expire, never delete
