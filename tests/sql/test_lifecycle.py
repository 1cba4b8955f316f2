"""Acknowledge and resolve: state, timestamps, and the provider actions they enqueue."""

from __future__ import annotations

import psycopg
import pytest

from tests.helpers import SEED_CRITICAL, deliveries


def test_acknowledge_records_who_and_enqueues_provider_acknowledgements(conn):
    conn.execute(SEED_CRITICAL)
    row = conn.execute("SELECT status, acknowledged_by, acknowledge_note, acknowledged_at IS NOT NULL "
                       "FROM monitoring_acknowledge_alert(1, 'alice', 'looking')").fetchone()
    assert row == ("acknowledged", "alice", "looking", True)
    # Sentry has no acknowledge; the others are told
    assert deliveries(conn)[3:] == [("pagerduty", "acknowledge", "pending"), ("slack", "acknowledge", "pending")]
    context = conn.execute("SELECT context FROM monitoring_deliveries WHERE action = 'acknowledge' LIMIT 1").fetchone()[0]
    assert context["by"] == "alice" and context["note"] == "looking"


def test_acknowledge_twice_changes_nothing_the_second_time(conn):
    conn.execute(SEED_CRITICAL)
    conn.execute("SELECT monitoring_acknowledge_alert(1, 'alice')")
    row = conn.execute("SELECT acknowledged_by FROM monitoring_acknowledge_alert(1, 'bob')").fetchone()
    assert row == ("alice",)
    assert len(deliveries(conn)) == 5


def test_resolve_without_acknowledge_and_as_false_positive(conn):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('disk', 'warning', 't')")
    row = conn.execute("SELECT status, false_positive, acknowledged_at FROM monitoring_resolve_alert(1, 'bob', 'flaky probe', true)").fetchone()
    assert row == ("resolved", True, None)
    assert deliveries(conn)[3:] == [("opsgenie", "resolve", "pending"), ("slack", "resolve", "pending")]


def test_follow_ups_skip_providers_that_were_never_told(conn):
    conn.execute(SEED_CRITICAL)
    conn.execute("UPDATE monitoring_deliveries SET status = 'skipped', completed_at = now() WHERE provider = 'pagerduty'")
    conn.execute("SELECT monitoring_resolve_alert(1)")
    assert deliveries(conn)[3:] == [("slack", "resolve", "pending")]


def test_backfilled_times(conn):
    conn.execute("SELECT monitoring_raise_alert('x', 'critical', 't', p_occurred_at => '2026-01-01 09:55+00', p_at => '2026-01-01 10:00+00')")
    conn.execute("SELECT monitoring_acknowledge_alert(1, 'a', NULL, '2026-01-01 10:04+00')")
    conn.execute("SELECT monitoring_resolve_alert(1, 'a', NULL, false, '2026-01-01 10:30+00')")
    row = conn.execute("SELECT extract(epoch FROM created_at - occurred_at), extract(epoch FROM acknowledged_at - created_at), "
                       "extract(epoch FROM resolved_at - created_at) FROM monitoring_alerts").fetchone()
    assert [float(v) for v in row] == [300, 240, 1800]


@pytest.mark.parametrize("call", [
    "SELECT monitoring_acknowledge_alert(999)",
    "SELECT monitoring_resolve_alert(999)",
    "SELECT monitoring_acknowledge_alert(NULL)",
])
def test_unknown_alert_is_a_clear_error(conn, call):
    with pytest.raises(psycopg.errors.NoDataFound, match="does not exist"):
        conn.execute(call)


def test_times_before_creation_are_refused(conn):
    conn.execute(SEED_CRITICAL)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="before it was created"):
        conn.execute("SELECT monitoring_acknowledge_alert(1, 'a', NULL, now() - interval '1 day')")
    assert conn.execute("SELECT status FROM monitoring_alerts").fetchone() == ("open",)
    assert len(deliveries(conn)) == 3


def test_purge_keeps_open_alerts_and_recent_history(conn):
    conn.execute("SELECT monitoring_raise_alert('old', 'info', 't', p_at => now() - interval '100 days')")
    conn.execute("SELECT monitoring_resolve_alert(1, 'a', NULL, false, now() - interval '95 days')")
    conn.execute("SELECT monitoring_raise_alert('recent', 'info', 't', p_at => now() - interval '100 days')")
    conn.execute("SELECT monitoring_resolve_alert(2, 'a', NULL, false, now() - interval '10 days')")
    conn.execute("SELECT monitoring_raise_alert('open', 'info', 't', p_at => now() - interval '200 days')")
    assert conn.execute("SELECT monitoring_purge_history()").fetchone() == (1,)
    assert conn.execute("SELECT array_agg(alert_type ORDER BY id) FROM monitoring_alerts").fetchone() == (["recent", "open"],)
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE alert_id = 1").fetchone() == (0,)
