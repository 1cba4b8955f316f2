"""Grouping, with explicit times: a storm becomes one notification per provider and group, sent after group_wait,
again as it changes (group_interval) or stays unacknowledged (repeat_interval); a group's acknowledge and resolve
reach its members, and its last member's resolve closes it."""

from __future__ import annotations

import datetime as dt
import threading

import psycopg
import pytest
from psycopg.types.json import Jsonb

T = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)
M = dt.timedelta(minutes=1)
CRITICAL = [{"field": "severity", "op": "=", "value": "critical"}]


def group_rule(conn, matchers=CRITICAL, group_by=("alert_type",), name="storms", **intervals):
    columns = "".join(f", {name}" for name in intervals)
    values = "".join(", %s" for _ in intervals)
    conn.execute(f"INSERT INTO monitoring_group_rules (name, matchers, group_by{columns}) VALUES (%s, %s, %s{values})",
                 (name, Jsonb(matchers), list(group_by), *intervals.values()))


def raise_alert(conn, alert_type="api_timeout", at=T, severity="critical", title="t", details=None, dedup=None):
    return conn.execute("SELECT monitoring_raise_alert(%s, %s, %s, p_dedup_key => %s, p_details => %s, p_at => %s)",
                        (alert_type, severity, title, dedup, Jsonb(details or {}), at)).fetchone()[0]


def groups(conn):
    """(group alert id, alert_type, severity, member_count) of every group."""
    return conn.execute("SELECT a.id, a.alert_type, a.severity, g.member_count FROM monitoring_alert_groups AS g "
                        "JOIN monitoring_alerts AS a ON a.id = g.alert_id ORDER BY a.id").fetchall()


def triggers(conn, alert_id):
    return conn.execute("SELECT provider, status, next_attempt_at, target FROM monitoring_deliveries "
                        "WHERE alert_id = %s AND action = 'trigger' ORDER BY provider, id", (alert_id,)).fetchall()


def send(conn, alert_id, at=None):
    """The dispatcher claimed and sent what was pending for the alert (at `at`, its claim time)."""
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', completed_at = coalesce(%s, now()), "
                 "first_attempt_at = coalesce(%s, now()), attempts = 1 WHERE alert_id = %s AND status = 'pending'",
                 (at, at, alert_id))


def test_a_storm_in_one_insert_becomes_one_group_per_key_and_members_are_not_sent_alone(conn):
    group_rule(conn)
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, dedup_key) "
                 "SELECT 'type_' || (i % 3), 'critical', 'storm ' || i, 'storm:' || i FROM generate_series(1, 1000) AS i")
    found = groups(conn)
    assert sorted((alert_type, severity) for _, alert_type, severity, _ in found) == \
        [("type_0", "critical"), ("type_1", "critical"), ("type_2", "critical")]
    assert sum(count for *_, count in found) == 1000
    assert conn.execute("SELECT count(*) FROM monitoring_alert_group_members").fetchone() == (1000,)
    # only the groups have deliveries: the critical route's three providers each
    assert conn.execute("SELECT count(DISTINCT alert_id), count(*) FROM monitoring_deliveries").fetchone() == (3, 9)
    # members count in the SLA, groups do not
    assert conn.execute("SELECT count(*) FROM monitoring_sla_metrics").fetchone() == (1000,)
    assert conn.execute("SELECT count(*) FROM monitoring_sla_metrics AS s JOIN monitoring_alert_groups AS g "
                        "ON g.alert_id = s.alert_id").fetchone() == (0,)


def test_the_first_notification_waits_group_wait_and_an_alert_no_rule_matches_goes_at_once(conn):
    group_rule(conn, group_wait=dt.timedelta(seconds=45))
    member = raise_alert(conn)
    [(group, *_)] = groups(conn)
    assert member != group
    assert {(provider, status, at) for provider, status, at, _ in triggers(conn, group)} == \
        {("pagerduty", "pending", T + 45 * S), ("slack", "pending", T + 45 * S), ("sentry", "pending", T + 45 * S)}
    assert triggers(conn, member) == []
    lone = raise_alert(conn, severity="warning", dedup="lone")  # matches no rule
    assert {status for _, status, _, _ in triggers(conn, lone)} == {"pending"}
    assert conn.execute("SELECT bool_and(next_attempt_at <= now()) FROM monitoring_deliveries WHERE alert_id = %s",
                        (lone,)).fetchone() == (True,)
    assert conn.execute("SELECT dedup_key, source, details -> 'pgalert_group' FROM monitoring_alerts WHERE id = %s",
                        (group,)).fetchone() == (f"pgalert-group:{group}", "pgalert",
                                                 {"rule": "storms", "group_by": {"alert_type": "api_timeout"}})


def test_alerts_of_another_key_open_another_group_and_group_labels_come_from_labels(conn):
    group_rule(conn, group_by=("labels.env",), matchers=[{"field": "alert_type", "op": "=~", "value": "api_.*"}])
    first = raise_alert(conn, "api_timeout", details={"labels": {"env": "prod"}})
    raise_alert(conn, "api_errors", details={"labels": {"env": "prod"}})
    raise_alert(conn, "api_timeout", details={"labels": {"env": "staging"}}, dedup="staging")
    raise_alert(conn, "db_down")
    found = groups(conn)
    assert [count for *_, count in found] == [2, 1]
    # a group is routed as its first member and carries the grouped labels, so silences and routes see them
    assert conn.execute("SELECT alert_type, details -> 'labels' FROM monitoring_alerts WHERE id = %s",
                        (found[0][0],)).fetchone() == ("api_timeout", {"env": "prod"})
    assert conn.execute("SELECT group_alert_id FROM monitoring_alert_group_members WHERE alert_id = %s",
                        (first,)).fetchone() == (found[0][0],)


def test_the_claim_says_how_many_alerts_the_group_holds_when_it_is_sent(conn):
    group_rule(conn, group_wait=dt.timedelta(0))
    for i in range(25):
        raise_alert(conn, title=f"timeout {i}", dedup=f"k{i}", at=T + i * S)
    rows = conn.execute("SELECT provider, alert FROM monitoring_claim_deliveries('d1') WHERE provider = 'pagerduty'").fetchall()
    [(_, alert)] = rows
    assert alert["title"] == "[25 alerts] timeout 0"
    assert alert["details"]["pgalert_group"]["alerts"] == 25
    assert alert["details"]["pgalert_group"]["open"] == 25
    latest = alert["details"]["pgalert_group"]["latest"]
    assert len(latest) == 20 and latest[0]["title"] == "timeout 24"
    assert "and 5 more" in alert["message"] and "- [critical] timeout 24" in alert["message"]


def test_members_that_join_after_the_notification_are_sent_group_interval_later(conn):
    group_rule(conn, group_wait=30 * S, group_interval=5 * M)
    raise_alert(conn, dedup="a")
    [(group, *_)] = groups(conn)
    send(conn, group, T + 30 * S)
    # nothing new: nothing to send
    assert conn.execute("SELECT monitoring_flush_groups(%s)", (T + 10 * M,)).fetchone() == (0,)
    raise_alert(conn, dedup="b", at=T + 11 * M)
    assert conn.execute("SELECT monitoring_flush_groups(%s)", (T + 11 * M,)).fetchone() == (3,)  # 10:30 + 5 min passed
    raise_alert(conn, dedup="c", at=T + 12 * M)
    assert conn.execute("SELECT monitoring_flush_groups(%s)", (T + 15 * M,)).fetchone() == (0,)  # 11:00 + 5 min not yet
    assert conn.execute("SELECT monitoring_flush_groups(%s)", (T + 16 * M,)).fetchone() == (3,)
    assert [(provider, status, target) for provider, status, _, target in triggers(conn, group) if provider == "pagerduty"] == \
        [("pagerduty", "succeeded", ""), ("pagerduty", "pending", "group notification 2"),
         ("pagerduty", "pending", "group notification 3")]


def test_an_unacknowledged_group_is_sent_again_every_repeat_interval_and_an_acknowledged_one_is_not(conn):
    group_rule(conn, group_wait=dt.timedelta(0), repeat_interval=dt.timedelta(hours=4))
    raise_alert(conn)
    [(group, *_)] = groups(conn)
    send(conn, group, T)
    assert conn.execute("SELECT monitoring_flush_groups(%s)", (T + 4 * 60 * M - S,)).fetchone() == (0,)
    assert conn.execute("SELECT monitoring_flush_groups(%s)", (T + 4 * 60 * M,)).fetchone() == (3,)
    send(conn, group, T + 4 * 60 * M)
    conn.execute("SELECT monitoring_acknowledge_alert(%s, 'alice', NULL, %s)", (group, T + 5 * 60 * M))
    assert conn.execute("SELECT monitoring_flush_groups(%s)", (T + 9 * 60 * M,)).fetchone() == (0,)


def test_a_group_updates_only_the_providers_that_heard_of_it(conn):
    group_rule(conn, group_wait=dt.timedelta(0))
    raise_alert(conn, dedup="a")
    [(group, *_)] = groups(conn)
    send(conn, group, T)
    conn.execute("UPDATE monitoring_deliveries SET status = 'skipped' WHERE alert_id = %s AND provider = 'sentry'", (group,))
    raise_alert(conn, dedup="b", at=T + M)
    assert conn.execute("SELECT monitoring_flush_groups(%s)", (T + 6 * M,)).fetchone() == (2,)


def test_resolving_the_group_resolves_its_members_and_tells_the_providers_once(conn):
    group_rule(conn, group_wait=dt.timedelta(0))
    members = [raise_alert(conn, dedup=f"k{i}") for i in range(3)]
    [(group, *_)] = groups(conn)
    send(conn, group, T)
    conn.execute("SELECT monitoring_acknowledge_alert(%s, 'alice', 'on it', %s)", (members[0], T + M))
    conn.execute("SELECT monitoring_resolve_alert(%s, 'bob', 'fixed the LB', false, %s)", (group, T + 10 * M))
    assert conn.execute("SELECT status, resolved_by, resolved_via, resolved_at FROM monitoring_alerts WHERE id = ANY(%s) "
                        "ORDER BY id", (members,)).fetchall() == [("resolved", "bob", "group", T + 10 * M)] * 3
    # (Sentry takes no resolve)
    assert conn.execute("SELECT provider FROM monitoring_deliveries WHERE action = 'resolve' ORDER BY provider").fetchall() == \
        [("pagerduty",), ("slack",)]
    assert conn.execute("SELECT closed_at FROM monitoring_alert_groups").fetchone() == (T + 10 * M,)
    # the next alert of the key opens a new group, a new incident
    raise_alert(conn, dedup="k0", at=T + 11 * M)
    assert len(groups(conn)) == 2


def test_acknowledging_the_group_acknowledges_its_open_members_and_their_mtta_is_the_groups(conn):
    group_rule(conn, group_wait=dt.timedelta(0))
    members = [raise_alert(conn, dedup=f"k{i}", at=T + i * M) for i in range(2)]
    [(group, *_)] = groups(conn)
    send(conn, group, T + 2 * M)
    conn.execute("SELECT monitoring_acknowledge_alert(%s, 'alice', NULL, %s)", (group, T + 5 * M))
    assert conn.execute("SELECT status, acknowledged_by, acknowledged_via FROM monitoring_alerts WHERE id = ANY(%s)",
                        (members,)).fetchall() == [("acknowledged", "alice", "group")] * 2
    assert conn.execute("SELECT alert_id, acknowledged_at - detected_at, first_notified_at FROM monitoring_sla_metrics "
                        "ORDER BY alert_id").fetchall() == [(members[0], 5 * M, T + 2 * M), (members[1], 4 * M, T + 2 * M)]
    # acknowledge reaches the providers once, for the group
    assert conn.execute("SELECT alert_id, provider FROM monitoring_deliveries WHERE action = 'acknowledge' "
                        "ORDER BY provider").fetchall() == [(group, "pagerduty"), (group, "slack")]


def test_the_last_members_resolve_resolves_the_group(conn):
    group_rule(conn, group_wait=dt.timedelta(0))
    members = [raise_alert(conn, dedup=f"k{i}") for i in range(2)]
    [(group, *_)] = groups(conn)
    send(conn, group, T)
    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice', NULL, false, %s)", (members[0], T + M))
    assert conn.execute("SELECT status FROM monitoring_alerts WHERE id = %s", (group,)).fetchone() == ("open",)
    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice', NULL, false, %s)", (members[1], T + 2 * M))
    assert conn.execute("SELECT status, resolved_by, resolved_via, resolved_at FROM monitoring_alerts WHERE id = %s",
                        (group,)).fetchone() == ("resolved", "pgalert", "group", T + 2 * M)
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE action = 'resolve' AND alert_id = %s",
                        (group,)).fetchone() == (2,)


def test_a_storm_over_before_its_group_was_sent_pages_nobody(conn):
    group_rule(conn, group_wait=30 * S)
    member = raise_alert(conn)
    [(group, *_)] = groups(conn)
    conn.execute("SELECT monitoring_resolve_alert(%s, 'rule', NULL, false, %s)", (member, T + 10 * S))
    assert {status for _, status, _, _ in triggers(conn, group)} == {"skipped"}
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE action <> 'trigger'").fetchone() == (0,)


def test_members_count_as_notified_when_the_group_notification_that_held_them_was_delivered(conn):
    group_rule(conn, group_wait=dt.timedelta(0))
    early = raise_alert(conn, dedup="early")
    [(group, *_)] = groups(conn)
    send(conn, group, T + S)
    late = raise_alert(conn, dedup="late", at=T + 2 * M)
    sla = "SELECT first_notified_at FROM monitoring_sla_metrics WHERE alert_id = %s"
    assert conn.execute(sla, (early,)).fetchone() == (T + S,)
    assert conn.execute(sla, (late,)).fetchone() == (None,)
    conn.execute("SELECT monitoring_flush_groups(%s)", (T + 10 * M,))
    send(conn, group, T + 10 * M)
    assert conn.execute(sla, (late,)).fetchone() == (T + 10 * M,)
    assert conn.execute(sla, (early,)).fetchone() == (T + S,)


def test_a_held_alert_does_not_join_a_group(conn):
    group_rule(conn)
    conn.execute("SELECT monitoring_create_silence(%s, %s, 'deploy', %s)",
                 (Jsonb([{"field": "alert_type", "op": "=", "value": "api_timeout"}]), T + 60 * M, T - M))
    held = raise_alert(conn)
    assert groups(conn) == []
    assert {status for _, status, _, _ in triggers(conn, held)} == {"held"}


def test_a_members_repeat_at_a_higher_severity_raises_the_group_not_the_member(conn):
    group_rule(conn, matchers=[{"field": "alert_type", "op": "=", "value": "api_timeout"}], group_wait=dt.timedelta(0))
    member = raise_alert(conn, severity="warning")
    [(group, _, severity, _)] = groups(conn)
    assert severity == "warning"
    send(conn, group, T)
    assert raise_alert(conn, severity="critical", at=T + M) == member
    assert groups(conn)[0][2] == "critical"
    assert triggers(conn, member) == []
    assert {(provider, status) for provider, status, _, _ in triggers(conn, group)} == \
        {("opsgenie", "succeeded"), ("slack", "succeeded"), ("sentry", "succeeded"), ("pagerduty", "pending")}


def test_the_first_matching_rule_by_position_wins_and_a_disabled_rule_groups_nothing(conn):
    group_rule(conn, name="by_type", group_by=("alert_type",))
    conn.execute("INSERT INTO monitoring_group_rules (name, matchers, group_by, position) VALUES "
                 "('everything', %s, '{}', 1)", (Jsonb(CRITICAL),))
    raise_alert(conn, "a_type")
    raise_alert(conn, "b_type")
    assert [count for *_, count in groups(conn)] == [2]
    conn.execute("UPDATE monitoring_group_rules SET enabled = false")
    lone = raise_alert(conn, "c_type")
    assert {status for _, status, _, _ in triggers(conn, lone)} == {"pending"}


@pytest.mark.parametrize(("column", "value", "message"), [
    ("matchers", Jsonb([{"field": "nope", "op": "=", "value": "x"}]), "matcher that is not"),
    ("group_by", ["alert_type", "hostname"], "group_by_names_fields"),
    ("group_interval", dt.timedelta(seconds=10), "group_interval_is_positive"),
    ("group_wait", dt.timedelta(hours=2), "group_wait_is_short"),
])
def test_a_bad_group_rule_is_refused_with_the_reason(conn, column, value, message):
    row = {"matchers": Jsonb(CRITICAL), column: value}
    with pytest.raises(psycopg.Error, match=message):
        conn.execute(f"INSERT INTO monitoring_group_rules (name, {', '.join(row)}) "
                     f"VALUES ('bad', {', '.join(['%s'] * len(row))})", tuple(row.values()))


def test_two_writers_opening_the_same_group_at_once_make_one_group(connect, conn):
    group_rule(conn)
    first, second = connect("monitoring_writer"), connect("monitoring_writer")
    first.autocommit = False
    first.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, dedup_key) "
                  "VALUES ('api_timeout', 'critical', 't', 'one')")
    errors: list[BaseException] = []

    def insert_second() -> None:
        try:
            second.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, dedup_key) "
                           "VALUES ('api_timeout', 'critical', 't', 'two')")
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    racer = threading.Thread(target=insert_second)
    racer.start()
    # the second writer is waiting for the first one's group lock (a condition, not a sleep)
    while not conn.execute("SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                           "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))").fetchone()[0]:
        pass
    first.commit()
    racer.join()
    assert errors == []
    assert [count for *_, count in groups(conn)] == [2]


def test_a_group_reopened_at_the_provider_takes_members_again(conn):
    group_rule(conn, group_wait=dt.timedelta(0))
    raise_alert(conn, dedup="a")
    [(group, *_)] = groups(conn)
    send(conn, group, T)
    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice', NULL, false, %s)", (group, T + M))
    conn.execute("SELECT _monitoring_reopen(%s, 'bob', %s, 'pagerduty')", (group, T + 2 * M))
    raise_alert(conn, dedup="b", at=T + 3 * M)
    assert [(alert_id, count) for alert_id, _, _, count in groups(conn)] == [(group, 2)]
