"""SLA figures checked against values computed here, independently, from a known incident history."""

from __future__ import annotations

import datetime as dt
import statistics
import threading
from decimal import Decimal

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.helpers import wait_until

T = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
S = dt.timedelta(seconds=1)
H = dt.timedelta(hours=1)

# (alert_type, severity, occurred, detected, acknowledged, resolved, false_positive)
HISTORY = [
    ("db_down", "critical", T - 10 * H - 120 * S, T - 10 * H, T - 10 * H + 240 * S, T - 10 * H + 1500 * S, False),
    ("disk", "warning", T - 5 * H, T - 5 * H, None, T - 5 * H + 4000 * S, True),              # resolved, never acked
    ("deploy", "info", T - 1 * H - 30 * S, T - 1 * H, None, None, False),                   # never acked or resolved
    ("database_connection_failure", "critical", T - 2 * H - 90 * S, T - 2 * H, T - 2 * H + 400 * S, T - 2 * H + 900 * S, False),
    ("cpu", "warning", T - 3 * H - 600 * S, T - 3 * H, T - 3 * H + 60 * S, T - 3 * H + 100 * S, True),
    ("old", "critical", T - 25 * H, T - 25 * H, None, T - 25 * H + 10 * S, True),            # before the window
    ("edge_out", "info", T - 24 * H, T - 24 * H, None, None, False),                          # exactly at the open edge
    ("edge_in", "info", T, T, None, None, False),                                             # exactly at the closed edge
]
# per alert index: [(provider, [attempt outcomes], seconds after detection the last attempt finished)]
DELIVERY_PLAN = {
    0: [("pagerduty", ["retry", "succeeded"], 8), ("slack", ["succeeded"], 2), ("sentry", ["failed"], 1)],
    1: [("opsgenie", ["succeeded"], 70), ("slack", ["retry", "retry", "failed"], 30)],
    3: [("pagerduty", ["succeeded"], 3)],
}


def seconds(a, b):
    return (a - b).total_seconds()


def build_history(conn):
    conn.execute("DELETE FROM monitoring_sla_targets WHERE alert_type = 'database_connection_failure'")
    conn.execute("INSERT INTO monitoring_sla_targets (metric, alert_type, target, compliance) "
                 "VALUES ('mttd', 'database_connection_failure', 60, 0.9)")
    conn.execute("DELETE FROM monitoring_sla_targets WHERE metric = 'mtta' AND severity = 'critical'")
    conn.execute("INSERT INTO monitoring_sla_targets (metric, severity, target, compliance) VALUES ('mtta', 'critical', 300, 0.9)")
    ids = []
    for alert_type, severity, occurred, detected, acked, resolved, fp in HISTORY:
        alert_id = conn.execute("SELECT monitoring_raise_alert(%s, %s, 't', p_occurred_at => %s, p_at => %s)",
                                (alert_type, severity, occurred, detected)).fetchone()[0]
        if acked:
            conn.execute("SELECT monitoring_acknowledge_alert(%s, 'alice', NULL, %s)", (alert_id, acked))
        if resolved:
            conn.execute("SELECT monitoring_resolve_alert(%s, 'alice', NULL, %s, %s)", (alert_id, fp, resolved))
        ids.append(alert_id)
    # drive the planned deliveries through the dispatcher interface; the rest stay skipped
    plans = {(ids[i], provider): (outcomes, after) for i, plan in DELIVERY_PLAN.items() for provider, outcomes, after in plan}
    conn.execute("UPDATE monitoring_deliveries SET status = 'skipped', completed_at = now() "
                 "WHERE action <> 'trigger' OR (alert_id, provider) NOT IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))",
                 ([k[0] for k in plans], [k[1] for k in plans]))
    for _round in range(3):  # at most three attempts in the plan
        rows = conn.execute("SELECT delivery_id, attempt, provider, (alert->>'id')::bigint FROM monitoring_claim_deliveries('d', 100)").fetchall()
        results = []
        for delivery_id, attempt, provider, alert_id in rows:
            outcomes, after = plans[(alert_id, provider)]
            detected = HISTORY[ids.index(alert_id)][3]
            finished = detected + after * S if attempt == len(outcomes) else detected + S
            results.append({"delivery_id": delivery_id, "attempt": attempt, "outcome": outcomes[attempt - 1],
                            "started_at": finished.isoformat(), "finished_at": finished.isoformat(),
                            "retry_at": "2000-01-01T00:00:00Z"})
        conn.execute("SELECT monitoring_complete_deliveries('d', %s)", (Jsonb(results),))
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE status IN ('pending', 'sending')").fetchone() == (0,)
    return ids


def expected_summary():
    window = [h for h in HISTORY if T - 24 * H < h[3] <= T]
    targets = {"mttd": 300, "delivery_time": 60, "mtta": 300, "mttr": 1800}
    per_type = {("mttd", "database_connection_failure"): 60}
    first_notified = {}
    for i, plan in DELIVERY_PLAN.items():
        done = [HISTORY[i][3] + after * S for _, outcomes, after in plan if outcomes[-1] == "succeeded"]
        if done:
            first_notified[i] = min(done)
    rows = {}
    series = {
        "mttd": [(seconds(h[3], h[2]), h) for h in window],
        "delivery_time": [(seconds(first_notified[HISTORY.index(h)], h[3]), h) for h in window if HISTORY.index(h) in first_notified],
        "mtta": [(seconds(h[4], h[3]), h) for h in window if h[4]],
        "mttr": [(seconds(h[5], h[3]), h) for h in window if h[5]],
        "mttr_after_ack": [(seconds(h[5], h[4]), h) for h in window if h[5] and h[4]],
    }
    for metric, values in series.items():
        xs = [v for v, _ in values]
        target = targets.get(metric)
        within = None
        if target is not None and xs:
            within = sum(v <= per_type.get((metric, h[0]), target) for v, h in values) / len(xs)
        rows[metric] = (len(xs), statistics.fmean(xs) if xs else None, statistics.median(xs) if xs else None, within)
    resolved = [h for h in window if h[5]]
    rows["false_positive_rate"] = (len(resolved), sum(h[6] for h in resolved) / len(resolved), None, None)
    attempted = [(o, p) for i, plan in DELIVERY_PLAN.items() if HISTORY[i] in window for p, o, _ in plan]
    rows["provider_success_rate"] = (len(attempted), sum(o[-1] == "succeeded" for o, _ in attempted) / len(attempted), None, None)
    rows["provider_first_attempt_success_rate"] = (len(attempted), sum(o[0] == "succeeded" for o, _ in attempted) / len(attempted), None, None)
    return rows


def test_summary_matches_independent_computation(conn):
    build_history(conn)
    got = {r[0]: r for r in conn.execute("SELECT * FROM monitoring_get_sla_summary(24, %s)", (T,)).fetchall()}
    expected = expected_summary()
    assert list(got) == ["mttd", "delivery_time", "mtta", "mttr", "mttr_after_ack", "false_positive_rate",
                         "provider_success_rate", "provider_first_attempt_success_rate"]
    for metric, (samples, mean, p50, within) in expected.items():
        row = got[metric]
        assert row[2] == samples, metric
        assert row[3] == pytest.approx(Decimal(str(mean)), abs=Decimal("0.001")), metric
        if p50 is not None:
            assert row[4] == pytest.approx(Decimal(str(p50)), abs=Decimal("0.001")), metric
        if within is not None:
            assert row[8] == pytest.approx(Decimal(str(within)), abs=Decimal("0.0001")), metric
    # targets met, from the same figures
    assert got["mttd"][10] is (expected["mttd"][3] >= 0.9)
    assert got["mttr"][10] is (expected["mttr"][3] >= 0.8)
    assert got["false_positive_rate"][10] is (expected["false_positive_rate"][1] < 0.05)
    assert got["provider_success_rate"][10] is (expected["provider_success_rate"][1] >= 0.95)


def test_per_type_target_changes_who_is_within(conn):
    build_history(conn)
    # database_connection_failure took 90 s to detect: inside the default 300 s, outside its own 60 s
    rows = dict((r[0], r[6]) for r in conn.execute(
        "SELECT dimension_value, metric, samples, mean, p50, p95, within_target FROM monitoring_get_sla_breakdown('alert_type', 24, %s) "
        "WHERE metric = 'mttd'", (T,)).fetchall())
    assert rows["database_connection_failure"] == 0 and rows["db_down"] == 1


def test_the_summary_says_which_targets_decided_within_target(conn):
    build_history(conn)
    summary = {r[0]: r[1:] for r in conn.execute(
        "SELECT metric, samples, target, targets_applied FROM monitoring_get_sla_summary(24, %s)", (T,)).fetchall()}
    samples, default, applied = summary["mttd"]
    # the type's own 60 s decided one alert, the default the others; `target` is the default, as named
    assert default == 300 and applied == f"300 s for {samples - 1}, 60 s for 1"


def test_breakdown_by_provider(conn):
    build_history(conn)
    rows = {(r[0], r[1]): (r[2], r[3]) for r in conn.execute(
        "SELECT * FROM monitoring_get_sla_breakdown('provider', 24, %s)", (T,)).fetchall()}
    assert rows[("pagerduty", "provider_success_rate")] == (2, Decimal("1.0000"))
    assert rows[("pagerduty", "provider_first_attempt_success_rate")] == (2, Decimal("0.5000"))
    assert rows[("slack", "provider_success_rate")] == (2, Decimal("0.5000"))
    assert rows[("sentry", "provider_success_rate")] == (1, Decimal("0.0000"))


def test_empty_window_has_no_verdicts(conn):
    rows = conn.execute("SELECT metric, samples, target_met FROM monitoring_get_sla_summary(24)").fetchall()
    assert all(samples == 0 and met is None for _, samples, met in rows)


def test_seed_call_and_reader_role(connect):
    connect().execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message) VALUES ('payment_failure', 'critical', 'Test', 'Test PagerDuty')")
    reader = connect("monitoring_reader")
    assert len(reader.execute("SELECT * FROM monitoring_get_sla_summary(24);").fetchall()) == 8
    assert reader.execute("SELECT count(*) FROM monitoring_get_sla_breakdown('severity')").fetchone()[0] > 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute("UPDATE monitoring_sla_targets SET target = 1")


@pytest.mark.parametrize(("call", "message"), [
    ("SELECT * FROM monitoring_get_sla_summary(0)", "hours must be positive"),
    ("SELECT * FROM monitoring_get_sla_breakdown('team')", "unknown dimension 'team'"),
])
def test_bad_arguments(conn, call, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
        conn.execute(call)


def test_lifecycle_keeps_the_row_current(conn):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'warning', 't')")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'critical', 't')")  # raises severity
    conn.execute("SELECT monitoring_acknowledge_alert(1, 'bob')")
    conn.execute("SELECT monitoring_resolve_alert(1, 'carol', NULL, true)")
    row = conn.execute("SELECT severity, acknowledged_by, resolved_by, false_positive, resolved_at IS NOT NULL FROM monitoring_sla_metrics").fetchone()
    assert row == ("critical", "bob", "carol", True, True)


def test_recording_results_locks_sla_rows_in_alert_order_so_dispatchers_cannot_deadlock(conn, connect):
    """Two dispatchers recording results for overlapping alerts deadlocked when each locked SLA rows in the
    order its join produced. The lock order is now by alert id: shown by holding alert 4's row and seeing
    that a recorder waiting for it already holds 1-3 and has not touched 5-8."""
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) SELECT 'a' || g, 'info', 't' FROM generate_series(1, 8) g")
    dispatcher = connect("monitoring_dispatcher")
    rows = dispatcher.execute("SELECT delivery_id, attempt FROM monitoring_claim_deliveries('d', 100)").fetchall()
    results = [{"delivery_id": d, "attempt": a, "outcome": "succeeded", "started_at": "2026-11-30T10:00:00Z",
                "finished_at": "2026-11-30T10:00:01Z"} for d, a in reversed(rows)]  # newest first
    holder = connect()
    holder.execute("BEGIN")
    holder.execute("SELECT FROM monitoring_sla_metrics WHERE alert_id = 4 FOR UPDATE")
    recording = threading.Thread(target=lambda: dispatcher.execute("SELECT monitoring_complete_deliveries('d', %s)", (Jsonb(results),)))
    recording.start()
    try:
        pid = dispatcher.info.backend_pid
        wait = lambda: conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]  # noqa: E731
        wait_until(lambda: wait() == "Lock")  # the recorder is blocked on alert 4's row
        probe = connect()
        locked = []
        for alert_id in range(1, 9):
            if alert_id == 4:
                continue
            try:
                with probe.transaction():
                    probe.execute("SELECT FROM monitoring_sla_metrics WHERE alert_id = %s FOR UPDATE NOWAIT", (alert_id,))
            except psycopg.errors.LockNotAvailable:
                locked.append(alert_id)
        assert locked == [1, 2, 3]
    finally:
        holder.execute("COMMIT")
        recording.join(20)
    assert conn.execute("SELECT count(*) FROM monitoring_sla_metrics WHERE first_notified_at IS NOT NULL").fetchone() == (8,)
