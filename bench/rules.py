"""Rules: evaluation time over 1M and 10M events, ingest with every rule active, and detection time.

- evaluation: the seven seed rules plus 100 more (count, aggregate, spike, absence over 20 event types), one
  full monitoring_evaluate_alert_rules(); events spread over 14 days (the retention), loaded with triggers off;
- ingest: events/s by 1,000-row INSERTs into monitoring_events with every rule active, as a ratio of the same
  partitioned table without triggers, alternating blocks;
- detection: INSERT of the event that crosses a count threshold -> the alert row, seen from another session.
"""

from __future__ import annotations

import time

import psycopg

TYPES = [f"bench_type_{i}" for i in range(20)]


def add_rules(conn: psycopg.Connection) -> None:
    kinds = [
        ("count", None, ">=", 1000),
        ("aggregate", "p95", ">", 10_000),
        ("aggregate", "avg", ">", 10_000),
        ("spike", None, ">=", 300),
        ("absence", None, ">=", 1),
    ]
    for i in range(100):
        kind, aggregate, comparison, threshold = kinds[i % len(kinds)]
        conn.execute(
            "INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, aggregate, comparison, threshold, "
            "min_samples, severity, group_by) VALUES (%s, %s, %s, %s, %s, %s, 5, 'info', %s)",
            (f"bench_rule_{i}", kind, TYPES[i % len(TYPES)], aggregate, comparison, threshold,
             ["host"] if i % 3 == 0 else []))


def load_events(conn: psycopg.Connection, count: int) -> None:
    conn.execute("SELECT monitoring_maintain_event_partitions()")
    conn.execute("SET session_replication_role = replica")
    conn.execute("""
        INSERT INTO monitoring_events (event_type, value, labels, occurred_at)
        SELECT (%s::text[])[1 + g %% 20], (g %% 997)::double precision, jsonb_build_object('host', 'web-' || g %% 8),
               now() - make_interval(secs => (g %% 1209600)::double precision)
        FROM generate_series(1, %s) AS g
    """, (TYPES, count))
    conn.execute("SET session_replication_role = DEFAULT")
    conn.execute("ANALYZE monitoring_events")


def time_evaluation(conn: psycopg.Connection, start_minute: int, repeat: int = 3) -> float:
    best = float("inf")
    for i in range(repeat + 1):
        at = f"now() + interval '{start_minute + i} minutes'"  # every rule due each time
        started = time.perf_counter()
        conn.execute(f"SELECT count(*) FROM monitoring_evaluate_alert_rules({at})").fetchone()
        if i:  # the first run warms caches
            best = min(best, time.perf_counter() - started)
    return best * 1000


def ingest(conn: psycopg.Connection, rounds: int = 5, rows: int = 1000) -> tuple[float, float]:
    conn.execute("CREATE TABLE IF NOT EXISTS bench_events (LIKE monitoring_events INCLUDING ALL) "
                 "PARTITION BY RANGE (occurred_at)")
    conn.execute("CREATE TABLE IF NOT EXISTS bench_events_default PARTITION OF bench_events DEFAULT")
    mix = ["payment_failure", "api_response_time", "memory_usage_percent", "application_error", *TYPES]
    batch = [(mix[i % len(mix)], float(i % 500), '{"host": "web-1"}') for i in range(rows)]
    sql = "INSERT INTO {} (event_type, value, labels) VALUES " + ",".join(["(%s, %s, %s::jsonb)"] * rows)
    flat = [v for row in batch for v in row]
    totals = {"bench_events": 0.0, "monitoring_events": 0.0}
    for table in totals:  # warm both, untimed: the bare table's first blocks ran at half speed (seen: 1.71)
        for _ in range(5):
            conn.execute(sql.format(table), flat)
    for _ in range(rounds):
        for table in totals:
            started = time.perf_counter()
            for _ in range(10):
                conn.execute(sql.format(table), flat)
            totals[table] += time.perf_counter() - started
    n = rounds * 10 * rows
    return n / totals["monitoring_events"], n / totals["bench_events"]


def detection(conn: psycopg.Connection, observer: psycopg.Connection, samples: int = 300) -> list[float]:
    conn.execute("INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, threshold, group_by, severity) "
                 "VALUES ('bench_detect', 'count', 'bench_detect', 1, '{n}', 'info')")
    latencies = []
    for i in range(samples):
        started = time.perf_counter()
        conn.execute("INSERT INTO monitoring_events (event_type, labels) VALUES ('bench_detect', %s)",
                     (f'{{"n": {i}}}',))
        while not observer.execute("SELECT 1 FROM monitoring_alerts WHERE alert_type = 'bench_detect' AND source = %s",
                                   (f'{{"n": {i}}}',)).fetchone():
            if time.perf_counter() - started > 120:
                raise RuntimeError("no alert within 120 s")
            time.sleep(0.0005)
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)
    return latencies


def run(fresh_database, report, percentile) -> None:
    url = fresh_database("pgalert_bench_rules")
    with psycopg.connect(url, autocommit=True) as conn, psycopg.connect(url, autocommit=True) as observer:
        add_rules(conn)
        load_events(conn, 1_000_000)
        one = time_evaluation(conn, 0)
        load_events(conn, 9_000_000)
        ten = time_evaluation(conn, 10)
        rules = conn.execute("SELECT count(*) FROM monitoring_alert_rules").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM monitoring_events").fetchone()[0]
        assert events == 10_000_000, events
        report(f"evaluate {rules} rules, 10M events", f"{ten:.0f} ms", f"1M events {one:.0f} ms = {ten / one:.2f}x",
               "goal < 250 ms, <= 1.3x")
        # autovacuum would otherwise work through the 10M fresh rows while ingest is measured (seen: the
        # ratios swung from 0.8 to 0.55 and the bare table's rate halved)
        conn.execute("VACUUM (ANALYZE) monitoring_events")
        conn.execute("CHECKPOINT")  # and the pages that VACUUM dirtied would be written during the first ingest
        conn.execute("UPDATE monitoring_alert_rules SET enabled = rule_name NOT LIKE 'bench%'")
        with_rules, plain = ingest(conn)
        report("event ingest, 1,000-row INSERTs, the 7 seed rules", f"{with_rules:,.0f} events/s",
               f"no triggers {plain:,.0f}/s = {with_rules / plain:.2f}", "goal >= 0.7")
        conn.execute("UPDATE monitoring_alert_rules SET enabled = TRUE")
        with_rules, plain = ingest(conn)
        report(f"event ingest, all {rules} rules (22 count rules here, firing)", f"{with_rules:,.0f} events/s",
               f"no triggers {plain:,.0f}/s = {with_rules / plain:.2f}", "goal >= 0.7")
        # before running counts, the worst case: no count rule near its threshold, so every statement counted
        # each rule's whole window (thousands of events per type by now)
        conn.execute("SELECT monitoring_resolve_alert(id, 'bench', NULL, FALSE, "
                     "greatest(now(), created_at, acknowledged_at)) FROM monitoring_alerts WHERE status <> 'resolved'")
        conn.execute("UPDATE monitoring_alert_rules SET threshold = 1e6 "
                     "WHERE rule_type = 'count' AND rule_name LIKE 'bench%'")
        with_rules, plain = ingest(conn)
        report(f"event ingest, all {rules} rules, none near its threshold", f"{with_rules:,.0f} events/s",
               f"no triggers {plain:,.0f}/s = {with_rules / plain:.2f}", "goal >= 0.7")
        latencies = detection(conn, observer)
        report("detection: crossing INSERT -> alert row, p50", f"{percentile(latencies, 50):.1f} ms", "", "")
        report("detection p99", f"{percentile(latencies, 99):.1f} ms", "", "goal < 2 s")
