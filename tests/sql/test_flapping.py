"""Flapping, with explicit times: a key that keeps opening and resolving is held open and notified once; it settles
after a quiet spell, resolved at the time of the resolve it held or notified once more as still firing."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from psycopg.types.json import Jsonb

T = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
M = dt.timedelta(minutes=1)
CHECK = [{"field": "alert_type", "op": "=", "value": "disk_check"}]


def flap_rule(conn, state_changes=6, within=dt.timedelta(hours=1), settle_after=30 * M, matchers=CHECK):
    conn.execute("INSERT INTO monitoring_flap_rules (name, matchers, state_changes, within, settle_after) "
                 "VALUES ('checks', %s, %s, %s, %s)", (Jsonb(matchers), state_changes, within, settle_after))


def fire(conn, at, alert_type="disk_check"):
    return conn.execute("SELECT monitoring_raise_alert(%s, 'warning', 'disk almost full', p_at => %s)",
                        (alert_type, at)).fetchone()[0]


def clear(conn, alert_id, at, via="rule"):
    """A rule (or an HTTP client) saw the problem go away."""
    conn.execute("SELECT _monitoring_resolve(%s, 'rule disk_check', NULL, false, %s, %s)", (alert_id, at, via))


def send(conn):
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', completed_at = now(), attempts = 1 "
                 "WHERE status = 'pending'")


def cycles(conn, count, start=T, every=5 * M):
    """`count` fire/clear cycles, every `every`, each delivered; the id of each cycle's alert."""
    ids = []
    for i in range(count):
        ids.append(fire(conn, start + i * every))
        send(conn)
        clear(conn, ids[-1], start + i * every + 2 * M)
        send(conn)
    return ids


def status(conn, alert_id):
    return conn.execute("SELECT status FROM monitoring_alerts WHERE id = %s", (alert_id,)).fetchone()[0]


def test_the_open_that_makes_six_changes_in_the_window_marks_the_alert_flapping_and_its_page_says_so(conn):
    flap_rule(conn)
    cycles(conn, 2)  # 4 changes
    third = fire(conn, T + 10 * M)  # 5: not yet
    assert conn.execute("SELECT count(*) FROM monitoring_flapping").fetchone() == (0,)
    send(conn)
    clear(conn, third, T + 12 * M)  # 6
    send(conn)
    fourth = fire(conn, T + 15 * M)  # 7: flapping
    assert conn.execute("SELECT alert_id, started_at, state_changes, state FROM monitoring_flapping").fetchall() == \
        [(fourth, T + 15 * M, 7, "firing")]
    [alert] = [row[0] for row in conn.execute("SELECT alert FROM monitoring_claim_deliveries('d1') "
                                              "WHERE provider = 'opsgenie'").fetchall()]
    assert alert["title"] == "[flapping] disk almost full"
    assert alert["details"]["pgalert_flapping"]["flapping"] is True


def test_while_it_flaps_resolves_by_rules_are_held_and_repeats_merge_so_providers_see_one_incident(conn):
    flap_rule(conn)
    cycles(conn, 3)
    flapping = fire(conn, T + 15 * M)
    send(conn)
    deliveries_before = conn.execute("SELECT count(*) FROM monitoring_deliveries").fetchone()[0]
    for i in range(5):
        clear(conn, flapping, T + (17 + 4 * i) * M)
        assert status(conn, flapping) == "open"
        assert fire(conn, T + (19 + 4 * i) * M) == flapping
    clear(conn, flapping, T + 40 * M, via="alertmanager")
    assert status(conn, flapping) == "open"
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries").fetchone()[0] == deliveries_before
    assert conn.execute("SELECT state, state_changes, last_change_at, held_resolve ->> 'via' FROM monitoring_flapping"
                        ).fetchone() == ("resolved", 7 + 11, T + 40 * M, "alertmanager")


def test_it_settles_after_a_quiet_spell_resolved_at_the_time_of_the_resolve_it_held(conn):
    flap_rule(conn, settle_after=30 * M)
    cycles(conn, 3)
    flapping = fire(conn, T + 15 * M)
    send(conn)
    clear(conn, flapping, T + 20 * M)
    assert conn.execute("SELECT monitoring_settle_flapping(%s)", (T + 49 * M,)).fetchone() == (0,)
    assert conn.execute("SELECT monitoring_settle_flapping(%s)", (T + 50 * M,)).fetchone() == (1,)
    assert conn.execute("SELECT status, resolved_at, resolved_via FROM monitoring_alerts WHERE id = %s",
                        (flapping,)).fetchone() == ("resolved", T + 20 * M, "rule")
    assert conn.execute("SELECT provider FROM monitoring_deliveries WHERE alert_id = %s AND action = 'resolve' "
                        "ORDER BY provider", (flapping,)).fetchall() == [("opsgenie",), ("slack",)]
    assert conn.execute("SELECT settled_at, settle_reason FROM monitoring_flapping").fetchone() == \
        (T + 50 * M, "quiet since the resolve it held")
    assert conn.execute("SELECT resolved_at - detected_at FROM monitoring_sla_metrics WHERE alert_id = %s",
                        (flapping,)).fetchone() == (5 * M,)


def test_one_that_settles_still_firing_is_notified_once_more_as_stopped_flapping(conn):
    flap_rule(conn, settle_after=30 * M)
    cycles(conn, 3)
    flapping = fire(conn, T + 15 * M)
    send(conn)
    clear(conn, flapping, T + 20 * M)
    fire(conn, T + 25 * M)
    assert conn.execute("SELECT monitoring_settle_flapping(%s)", (T + 55 * M,)).fetchone() == (1,)
    assert status(conn, flapping) == "open"
    claimed = conn.execute("SELECT provider, target, alert FROM monitoring_claim_deliveries('d1') ORDER BY provider").fetchall()
    assert [(provider, target) for provider, target, _ in claimed] == \
        [("opsgenie", "stopped flapping 1"), ("sentry", "stopped flapping 1"), ("slack", "stopped flapping 1")]
    assert {alert["title"] for _, _, alert in claimed} == {"[stopped flapping] disk almost full"}
    # settled: the next resolve by the rule goes through
    send(conn)
    clear(conn, flapping, T + 60 * M)
    assert status(conn, flapping) == "resolved"


def test_a_persons_resolve_is_never_held_and_ends_the_episode(conn):
    flap_rule(conn)
    cycles(conn, 3)
    flapping = fire(conn, T + 15 * M)
    send(conn)
    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice', 'replaced the disk', false, %s)", (flapping, T + 16 * M))
    assert status(conn, flapping) == "resolved"
    assert conn.execute("SELECT settled_at, settle_reason FROM monitoring_flapping").fetchone() == \
        (T + 16 * M, "resolved by alice via sql")
    assert conn.execute("SELECT monitoring_settle_flapping(%s)", (T + 60 * M,)).fetchone() == (0,)


def test_changes_older_than_the_window_and_alerts_no_rule_watches_do_not_count(conn):
    flap_rule(conn, within=dt.timedelta(minutes=30))
    cycles(conn, 3, every=15 * M)  # six changes, but spread over 32 minutes
    fire(conn, T + 45 * M)
    assert conn.execute("SELECT count(*) FROM monitoring_flapping").fetchone() == (0,)
    other = fire(conn, T, "api_timeout")
    clear(conn, other, T + M)
    assert status(conn, other) == "resolved"
    assert conn.execute("SELECT count(*) FROM monitoring_flap_changes WHERE dedup_key = 'api_timeout'").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM monitoring_flap_changes WHERE dedup_key = 'disk_check'").fetchone() == (7,)


@pytest.mark.parametrize(("column", "value", "message"), [
    ("state_changes", 2, "flapping_takes_some_changes"),
    ("settle_after", dt.timedelta(seconds=5), "settle_after_a_minute"),
    ("matchers", Jsonb([]), "non-empty JSON array"),
])
def test_a_bad_flap_rule_is_refused_with_the_reason(conn, column, value, message):
    row = {"matchers": Jsonb(CHECK), column: value}
    with pytest.raises(psycopg.Error, match=message):
        conn.execute(f"INSERT INTO monitoring_flap_rules (name, {', '.join(row)}) "
                     f"VALUES ('bad', {', '.join(['%s'] * len(row))})", tuple(row.values()))
