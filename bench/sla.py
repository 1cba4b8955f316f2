"""SLA summary over many alerts: monitoring_get_sla_summary(24) and (720) on 1 million alerts.

To show that time follows the alerts in the window rather than the table, the same 24-hour query is timed on
the newest 100,000 alerts and again after the older 900,000 are added (same density: 1M alerts over 30 days).
The history is generated with triggers off (session_replication_role = replica) and SLA rows built in bulk:
this measures the read path, not ingest.
"""

from __future__ import annotations

import time

import psycopg

SPACING_SECONDS = 30 * 86400 / 1_000_000  # 1M alerts over 30 days


def load(conn: psycopg.Connection, first: int, last: int) -> None:
    """Alerts number first..last, alert n detected n * spacing seconds before now, with SLA rows and deliveries."""
    conn.execute("SET session_replication_role = replica")
    conn.execute("""
        INSERT INTO monitoring_alerts (alert_type, severity, title, dedup_key, occurred_at, created_at, last_seen_at,
                                       status, acknowledged_at, resolved_at, false_positive)
        SELECT 'type_' || (g %% 40), (ARRAY['critical', 'warning', 'info'])[1 + g %% 3], 'bench', 'k' || g,
               d - make_interval(secs => g %% 400), d, d,
               CASE WHEN g %% 10 = 0 THEN 'open' ELSE 'resolved' END,
               CASE WHEN g %% 4 <> 0 THEN d + make_interval(secs => 30 + g %% 500) END,
               CASE WHEN g %% 10 <> 0 THEN d + make_interval(secs => 600 + g %% 3000) END,
               g %% 10 <> 0 AND g %% 23 = 0
        FROM (SELECT g, now() - make_interval(secs => g * %s) AS d FROM generate_series(%s, %s) AS g) AS x
    """, (SPACING_SECONDS, first, last))
    conn.execute("""
        INSERT INTO monitoring_sla_metrics (alert_id, alert_type, severity, occurred_at, detected_at, first_notified_at,
                                            acknowledged_at, resolved_at, false_positive)
        SELECT id, alert_type, severity, occurred_at, created_at, created_at + make_interval(secs => 0.05 + id % 3),
               acknowledged_at, resolved_at, false_positive
        FROM monitoring_alerts a WHERE NOT EXISTS (SELECT FROM monitoring_sla_metrics s WHERE s.alert_id = a.id)
    """)
    conn.execute("""
        INSERT INTO monitoring_deliveries (alert_id, provider, action, status, attempts, created_at, completed_at)
        SELECT a.id, p.provider, 'trigger', CASE WHEN a.id % 50 = 0 THEN 'failed' ELSE 'succeeded' END,
               1 + (a.id % 7 = 0)::int, a.created_at, a.created_at + interval '1 second'
        FROM monitoring_alerts a CROSS JOIN (VALUES ('pagerduty'), ('slack'), ('sentry')) AS p (provider)
        WHERE NOT EXISTS (SELECT FROM monitoring_deliveries d WHERE d.alert_id = a.id)
    """)
    conn.execute("""
        INSERT INTO monitoring_delivery_attempts (delivery_id, attempt, dispatcher, started_at, finished_at, outcome)
        SELECT d.id, 1, 'bench', d.created_at, d.completed_at,
               CASE WHEN d.attempts > 1 OR d.status = 'failed' THEN 'retry' ELSE 'succeeded' END
        FROM monitoring_deliveries d
        WHERE NOT EXISTS (SELECT FROM monitoring_delivery_attempts x WHERE x.delivery_id = d.id)
    """)
    conn.execute("SET session_replication_role = DEFAULT")
    conn.execute("VACUUM ANALYZE monitoring_alerts, monitoring_sla_metrics, monitoring_deliveries, "
                 "monitoring_delivery_attempts")


def timed(conn: psycopg.Connection, hours: int, repeat: int) -> float:
    conn.execute("SELECT * FROM monitoring_get_sla_summary(%s)", (hours,)).fetchall()  # warm
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        conn.execute("SELECT * FROM monitoring_get_sla_summary(%s)", (hours,)).fetchall()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def run(url: str, report) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        load(conn, 1, 100_000)
        in_window = conn.execute("SELECT count(*) FROM monitoring_sla_metrics "
                                 "WHERE detected_at > now() - interval '24 hours'").fetchone()[0]
        small = timed(conn, 24, 5)
        load(conn, 100_001, 1_000_000)
        large = timed(conn, 24, 5)
        month = timed(conn, 720, 2)
    report(f"SLA summary(24), 1M alerts ({in_window:,} in window)", f"{large:.0f} ms",
           f"same window on 100k alerts {small:.0f} ms = {large / small:.2f}x", "goal < 500 ms, ~1x")
    report("SLA summary(720), 1M alerts (all in window)", f"{month:.0f} ms", f"{month / large:.1f}x the 24 h query")
