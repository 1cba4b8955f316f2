"""monitoring_alerts: the seed statements, routing, deduplication and bad input, called in SQL."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tests.helpers import SEED_CRITICAL, deliveries


def test_seed_statement_routes_critical_to_pagerduty_slack_sentry(conn):
    conn.execute(SEED_CRITICAL)
    alert = conn.execute("SELECT id, severity, priority, status, dedup_key FROM monitoring_alerts").fetchone()
    assert alert[1:] == ("critical", "P0", "open", "payment_failure")
    assert deliveries(conn) == [
        ("pagerduty", "trigger", "pending"), ("slack", "trigger", "pending"), ("sentry", "trigger", "pending")
    ]


@pytest.mark.parametrize(("severity", "providers"), [
    ("warning", ["opsgenie", "slack", "sentry"]),
    ("info", ["slack"]),
    ("P0", ["pagerduty", "slack", "sentry"]),
    ("Warning", ["opsgenie", "slack", "sentry"]),
])
def test_routes_by_severity(conn, severity, providers):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', %s, 't')", (severity,))
    assert [p for p, _, _ in deliveries(conn)] == providers


def test_a_delivery_is_written_in_the_same_transaction_as_its_alert(conn, connect):
    other = connect()
    with conn.transaction():
        conn.execute(SEED_CRITICAL)
        assert other.execute("SELECT count(*) FROM monitoring_deliveries").fetchone()[0] == 0
        conn.execute("SELECT 1")
    assert other.execute("SELECT count(*) FROM monitoring_deliveries").fetchone()[0] == 3
    with pytest.raises(psycopg.errors.DivisionByZero), conn.transaction():
        conn.execute(SEED_CRITICAL.replace("payment_failure", "other"))
        conn.execute("SELECT 1/0")
    assert other.execute("SELECT count(*) FROM monitoring_deliveries").fetchone()[0] == 3


def test_a_type_specific_route_replaces_the_severity_default(conn):
    conn.execute("INSERT INTO monitoring_routes (alert_type, severity, provider) VALUES ('deploy', NULL, 'webhook')")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('deploy', 'critical', 't')")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('other', 'info', 't')")
    assert deliveries(conn) == [("webhook", "trigger", "pending"), ("slack", "trigger", "pending")]


def test_a_disabled_type_route_silences_the_type(conn):
    conn.execute("INSERT INTO monitoring_routes (alert_type, severity, provider, enabled) VALUES ('noisy', 'info', 'slack', false)")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('noisy', 'info', 't')")
    assert deliveries(conn) == []


def test_repeats_while_open_page_nobody_but_lose_nothing(conn):
    conn.execute(SEED_CRITICAL)
    cur = conn.execute(
        "INSERT INTO monitoring_alerts (alert_type, severity, title, message, details) "
        "VALUES ('payment_failure', 'critical', 'Test 2', 'second', '{\"gateway\": \"mp\"}')"
    )
    assert cur.rowcount == 0  # the app's INSERT succeeds; no second alert
    row = conn.execute("SELECT count(*), max(occurrence_count), max(title), max(message), "
                       "max(details->>'gateway'), bool_and(last_seen_at > created_at) FROM monitoring_alerts").fetchone()
    assert row == (1, 2, "Test 2", "second", "mp", True)
    assert len(deliveries(conn)) == 3


def test_after_resolve_the_same_key_opens_a_new_alert(conn):
    conn.execute(SEED_CRITICAL)
    conn.execute("SELECT monitoring_resolve_alert(1)")
    conn.execute(SEED_CRITICAL)
    assert conn.execute("SELECT id, status FROM monitoring_alerts ORDER BY id").fetchall() == [(1, "resolved"), (2, "open")]
    assert [p for p, a, _ in deliveries(conn, 2)] == ["pagerduty", "slack", "sentry"]


def test_default_dedup_key_is_type_plus_source(conn):
    for source in ("web-1", "web-2", "web-1", ""):
        conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, source) VALUES ('cpu', 'warning', 't', %s)", (source,))
    rows = conn.execute("SELECT dedup_key, occurrence_count FROM monitoring_alerts ORDER BY id").fetchall()
    assert rows == [("cpu:web-1", 2), ("cpu:web-2", 1), ("cpu", 1)]


def test_explicit_dedup_key_wins(conn):
    for source in ("a", "b"):
        conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, source, dedup_key) VALUES ('cpu', 'warning', 't', %s, 'k')", (source,))
    assert conn.execute("SELECT count(*), max(occurrence_count) FROM monitoring_alerts").fetchone() == (1, 2)


def test_a_repeat_with_higher_severity_raises_it_and_pages_the_new_providers(conn):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('db', 'warning', 't')")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('db', 'critical', 't')")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('db', 'info', 't')")
    assert conn.execute("SELECT severity, occurrence_count FROM monitoring_alerts").fetchone() == ("critical", 3)
    assert sorted(p for p, _, _ in deliveries(conn)) == ["opsgenie", "pagerduty", "sentry", "slack"]


def test_concurrent_inserts_of_one_key_make_one_alert(connect):
    sessions = [connect() for _ in range(8)]
    barrier = threading.Barrier(len(sessions))
    errors = []

    def insert(session):
        try:
            with session.transaction():
                barrier.wait()
                for _ in range(5):
                    session.execute(SEED_CRITICAL)
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=insert, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    check = connect()
    assert check.execute("SELECT count(*), sum(occurrence_count) FROM monitoring_alerts").fetchone() == (1, 40)
    assert check.execute("SELECT count(*) FROM monitoring_deliveries").fetchone()[0] == 3


def test_multi_row_insert_that_deduplicates_within_itself(conn):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message) "
                 "VALUES ('x', 'warning', 't', 'a'), ('x', 'critical', 't', 'b')")
    assert conn.execute("SELECT severity, occurrence_count, message FROM monitoring_alerts").fetchone() == ("critical", 2, "b")
    assert sorted(p for p, _, _ in deliveries(conn)) == ["opsgenie", "pagerduty", "sentry", "slack"]


@pytest.mark.parametrize(("sql", "expected"), [
    ("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'urgent', 't')",
     "unknown severity 'urgent'"),
    ("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', NULL, 't')", "unknown severity NULL"),
    ("INSERT INTO monitoring_alerts (alert_type, severity, message) VALUES ('x', 'info', 'm')", "title is required"),
    ("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'info', '  ')", "title is required"),
    ("INSERT INTO monitoring_alerts (severity, title) VALUES ('info', 't')", "alert_type is required"),
])
def test_bad_input_is_refused_clearly_and_writes_nothing(conn, sql, expected):
    with pytest.raises(psycopg.Error) as error:
        conn.execute(sql)
    assert expected in str(error.value)
    if "severity" in expected:
        assert "critical (P0), warning (P1), info (P2)" in error.value.diag.message_hint
    assert conn.execute("SELECT (SELECT count(*) FROM monitoring_alerts) + (SELECT count(*) FROM monitoring_deliveries)").fetchone()[0] == 0


def test_long_text_unicode_and_large_details_up_to_the_limits_are_stored_whole(conn):
    title = "Zahlung fehlgeschlagen 💳 " * 40  # 1,000 characters, 4-byte ones among them
    message = "ñ" * 20_000
    details = {"blob": "x" * 60_000, "nested": {"k": ["é", 1, None]}}
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message, details) VALUES ('x', 'info', %s, %s, %s)",
                 (title, message, psycopg.types.json.Jsonb(details)))
    stored = conn.execute("SELECT title, message, details FROM monitoring_alerts").fetchone()
    assert stored == (title, message, details)


def test_raise_alert_returns_the_open_alert_id(conn):
    first = conn.execute("SELECT monitoring_raise_alert('disk', 'warning', 'Disk full', p_source => 'db-1')").fetchone()[0]
    again = conn.execute("SELECT monitoring_raise_alert('disk', 'warning', 'Disk full', p_source => 'db-1')").fetchone()[0]
    other = conn.execute("SELECT monitoring_raise_alert('disk', 'warning', 'Disk full', p_source => 'db-2')").fetchone()[0]
    assert first == again != other


def test_a_deduplicated_insert_returns_no_row_and_raise_alert_names_the_open_one(conn):
    insert = "INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('disk', 'warning', 'Disk full') RETURNING id"
    opened = conn.execute(insert).fetchall()
    repeat = conn.execute(insert)
    assert len(opened) == 1 and repeat.rowcount == 0 and repeat.fetchall() == []  # as the README says: INSERT 0 0
    assert conn.execute("SELECT monitoring_raise_alert('disk', 'warning', 'Disk full')").fetchone()[0] == opened[0][0]
    assert conn.execute("SELECT occurrence_count FROM monitoring_alerts").fetchall() == [(3,)]


def test_a_client_clock_ahead_cannot_make_detection_negative(conn):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, occurred_at) VALUES ('x', 'info', 't', now() + interval '1 hour')")
    assert conn.execute("SELECT occurred_at = created_at FROM monitoring_alerts").fetchone()[0]


HISTORY_ROW = """INSERT INTO monitoring_alerts (alert_type, severity, title, occurred_at, created_at, acknowledged_at, resolved_at,
                                              false_positive, status)
                 VALUES ('payment_failure', 'critical', 'Last year''s outage', now() - interval '3 hours 2 minutes',
                         now() - interval '3 hours', now() - interval '170 minutes', now() - interval '2 hours',
                         %s, 'resolved')"""


def test_an_alert_inserted_as_resolved_is_history_that_pages_nobody(connect):
    writer, importer, admin = connect("monitoring_writer"), connect("monitoring_admin"), connect()
    writer.execute(SEED_CRITICAL)  # a current problem with the same key
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        writer.execute(HISTORY_ROW, (False,))  # apps cannot write lifecycle columns
    importer.execute(HISTORY_ROW, (False,))
    rows = admin.execute("SELECT status, occurrence_count, resolved_by, acknowledged_by FROM monitoring_alerts ORDER BY id").fetchall()
    assert rows == [("open", 1, None, None), ("resolved", 1, "import", "import")]  # not merged into the open one
    assert [(a, p) for a, p, _ in admin.execute(
        "SELECT alert_id, provider, status FROM monitoring_deliveries ORDER BY id").fetchall()] == [
        (1, "pagerduty"), (1, "slack"), (1, "sentry")]
    assert admin.execute("SELECT count(*) FROM monitoring_alert_escalations WHERE alert_id = 2").fetchone() == (0,)
    sla = admin.execute("SELECT extract(epoch FROM detected_at - occurred_at), extract(epoch FROM acknowledged_at - detected_at), "
                        "extract(epoch FROM resolved_at - detected_at) FROM monitoring_sla_metrics WHERE alert_id = 2").fetchone()
    assert [float(v) for v in sla] == [120, 600, 3600]
    mttr = admin.execute("SELECT samples, mean FROM monitoring_get_sla_summary(24) WHERE metric = 'mttr'").fetchone()
    assert (mttr[0], float(mttr[1])) == (1, 3600)


@pytest.mark.parametrize(("columns", "values", "message"), [
    ("status", "'resolved'", "needs resolved_at"),
    ("status, resolved_at", "'resolved', now() + interval '1 hour'", "in the future"),
    ("status, resolved_at", "'resolved', now() - interval '1 hour'", "created_at <= acknowledged_at <= resolved_at"),
    ("status, created_at, acknowledged_at, resolved_at",
     "'resolved', now() - interval '2 hours', now() - interval '10 minutes', now() - interval '1 hour'",
     "created_at <= acknowledged_at <= resolved_at"),
])
def test_history_with_impossible_times_is_refused(conn, columns, values, message):
    with pytest.raises(psycopg.Error, match=message):
        conn.execute(f"INSERT INTO monitoring_alerts (alert_type, severity, title, {columns}) VALUES ('x', 'info', 't', {values})")
    assert conn.execute("SELECT count(*) FROM monitoring_alerts").fetchone() == (0,)


def test_a_storm_after_statistics_of_an_empty_table_looks_each_key_up_by_index(conn):
    # A fresh install analysed while empty (or a table autovacuum last saw quiet), then an incident: one INSERT
    # of thousands of alerts. The trigger keeps one plan per connection for the key lookup, made at the first row
    # from those statistics; a scan of the table for each row made the storm quadratic (20,000 alerts: 23 s).
    conn.execute("ANALYZE monitoring_alerts")

    def rows_read() -> int:  # in sequence, or fetched through an index (a whole index read is no better)
        conn.execute("SELECT pg_stat_force_next_flush()")
        return conn.execute("SELECT seq_tup_read + idx_tup_fetch FROM pg_stat_user_tables "
                            "WHERE relid = 'monitoring_alerts'::regclass").fetchone()[0]

    before = rows_read()
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, dedup_key) "
                 "SELECT 'storm', 'info', 't', 'storm-' || g || '-key' FROM generate_series(1, 2000) AS g")
    read = rows_read() - before
    assert conn.execute("SELECT count(*) FROM monitoring_alerts").fetchone()[0] == 2000
    # linear: each new alert is read a few times by the INSERT's own statements, never the table per row
    assert read < 20 * 2000, f"an INSERT of 2,000 new keys read {read} rows of monitoring_alerts"
