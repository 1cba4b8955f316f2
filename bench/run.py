"""`make bench`: pgalert's figures against local fake providers on loopback, each beside a baseline from the
same run (these machines are shared and noisy, so ratios mean more than absolute numbers).

- the hot path (bench/hotpath.py): latency INSERT commit -> an out-of-process receiver, against floor-1 (NOTIFY
  + POST), floor-2 (+ one SKIP LOCKED claim) and pgqueuer, alternating rounds; one-worker drains against a
  minimal claim-then-send dispatcher; deadlocks with 2 and 4 dispatchers;
- throughput: 10,000 critical alerts in one transaction (40,000 deliveries: three providers and the first
  on-call page each), one dispatcher, then two;
- insert cost: single-session INSERT rate into monitoring_alerts with all its triggers, as a ratio of the same
  columns (LIKE ... INCLUDING ALL) in a table without triggers;
- dispatcher peak memory (VmHWM) over the throughput run;
- `pgalert serve`: an Alertmanager webhook of 100 alerts and single-alert POSTs, against the same INSERTs in SQL
  (bench/inbound.py); rules over 10M events (bench/rules.py); the SLA summary over 1M alerts (bench/sla.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from bench import console, grouping, hotpath, hygiene, inbound, rules, sla
from devtools.fake_providers import FakeProviders
from devtools.localpg import LocalServer
from dispatcher.migrate import migrate

ROWS: list[tuple[str, str, str, str]] = []


def report(metric: str, value: str, baseline: str = "", goal: str = "") -> None:
    ROWS.append((metric, value, baseline, goal))
    print(f"  {metric}: {value}  {baseline}  {goal}", flush=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(round(p / 100 * (len(ordered) - 1))), len(ordered) - 1)]


def fresh_database(server: LocalServer, name: str) -> str:
    with psycopg.connect(server.url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = server.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn, log=lambda *_: None)
        # pg_cron runs in its own database, not this one: no pgalert_scheduler_stalled alert may join the
        # measured deliveries, however long a benchmark runs
        conn.execute("UPDATE monitoring_scheduler_heartbeat SET beat_at = 'infinity'")
    return url


def start_dispatcher(url: str, fake: FakeProviders, name: str, log_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, **fake.env(), "DATABASE_URL": url}
    return subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "dispatch", "--pacing", "off", "--dispatcher-id", name,
         "--log-level", "warning", *extra],
        env=env, stderr=open(log_dir / f"{name}.log", "ab"),  # noqa: SIM115 - owned by the child
    )


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(20)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---- throughput ---------------------------------------------------------------------------------------------

def measure_throughput(server: LocalServer, fake: FakeProviders, dispatchers: int, alerts: int,
                       log_dir: Path) -> tuple[float, float, float, int]:
    url = fresh_database(server, "pgalert_bench_throughput")
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message) "
                     "SELECT 'throughput_' || g, 'critical', 'Throughput probe', 'bench' FROM generate_series(1, %s) g",
                     (alerts,))
        insert_seconds = time.perf_counter() - started
        expected = conn.execute("SELECT count(*) FROM monitoring_deliveries").fetchone()[0]
        processes = [start_dispatcher(url, fake, f"throughput{dispatchers}_{i}", log_dir) for i in range(dispatchers)]
        peak = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            left = conn.execute("SELECT count(*) FROM monitoring_deliveries "
                                "WHERE status NOT IN ('succeeded', 'failed', 'skipped')").fetchone()[0]
            peak = max([peak, *(peak_rss_mb(p.pid) for p in processes)])
            if not left:
                break
            time.sleep(0.2)
        first, last, succeeded = conn.execute(
            "SELECT min(started_at), max(finished_at), count(*) FILTER (WHERE outcome = 'succeeded') "
            "FROM monitoring_delivery_attempts").fetchone()
    for process in processes:
        stop(process)
    if succeeded != expected:
        raise RuntimeError(f"throughput run: {succeeded} of {expected} deliveries succeeded")
    return expected / (last - first).total_seconds(), peak, insert_seconds, expected


# ---- insert cost --------------------------------------------------------------------------------------------

def measure_insert_cost(url: str, rounds: int, per_round: int) -> tuple[float, float, float, float]:
    """Alternate blocks into the plain table and monitoring_alerts so drift on a shared machine hits both."""
    insert = ("INSERT INTO {} (alert_type, severity, title, message, dedup_key) "
              "VALUES (%s, 'warning', 'Insert probe', 'bench', %s)")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_plain (LIKE monitoring_alerts INCLUDING ALL)")
        totals = {"bench_plain": 0.0, "monitoring_alerts": 0.0}
        in_tx = {"bench_plain": 0.0, "monitoring_alerts": 0.0}
        for r in range(rounds):
            for table in totals:
                started = time.perf_counter()
                for i in range(per_round):
                    conn.execute(insert.format(table), (f"insert_{r}_{i}",) * 2)
                totals[table] += time.perf_counter() - started
                started = time.perf_counter()
                with conn.transaction():
                    for i in range(per_round):
                        conn.execute(insert.format(table), (f"insert_tx_{r}_{i}",) * 2)
                in_tx[table] += time.perf_counter() - started
    n = rounds * per_round
    return (n / totals["monitoring_alerts"], n / totals["bench_plain"],
            n / in_tx["monitoring_alerts"], n / in_tx["bench_plain"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts in the throughput run")
    parser.add_argument("--port", type=int, default=55434)
    parser.add_argument("--only", choices=["core", "hotpath", "hygiene", "grouping", "sla", "rules", "inbound",
                                           "console"],
                        help="run one part")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the hot-path comparison")
    args = parser.parse_args()

    server = LocalServer("bench", args.port)
    server.start()
    log_dir = server.base_dir
    fake = FakeProviders().start()
    print(f"pgalert benchmark on {os.cpu_count()} cores; logs in {log_dir}", flush=True)

    if args.only in (None, "hotpath"):
        print("hot path against its floor ...", flush=True)
        hotpath.run(lambda name: fresh_database(server, name), log_dir, report, percentile, rounds=args.rounds)
    if args.only in (None, "core"):
        core(server, fake, log_dir, args)
    if args.only == "hygiene":  # part of core; alone, for the INSERT path's figures
        insert_cost(server)
    if args.only in (None, "grouping"):
        print("a storm to a person, grouped ...", flush=True)
        grouping.run(fresh_database(server, "pgalert_bench_grouping"), fake, log_dir, report, start_dispatcher, stop,
                     peak_rss_mb)
    if args.only in (None, "rules"):
        print("rules over 10M events ...", flush=True)
        rules.run(lambda name: fresh_database(server, name), report, percentile)
    if args.only in (None, "inbound"):
        print("pgalert serve ...", flush=True)
        inbound.run(fresh_database(server, "pgalert_bench_inbound"), log_dir, report)
    if args.only in (None, "console"):
        print("the console ...", flush=True)
        console.run(fresh_database(server, "pgalert_bench_console"), log_dir, report)
    if args.only in (None, "sla"):
        print("SLA summary over 1M alerts ...", flush=True)
        sla.run(fresh_database(server, "pgalert_bench_sla"), report)
    fake.stop()

    width = max(len(r[0]) for r in ROWS)
    print("\n" + "| metric".ljust(width + 2) + " | value | baseline (same run) | goal |")
    print("|" + "-" * (width + 1) + "|---|---|---|")
    for metric, value, baseline, goal in ROWS:
        print(f"| {metric.ljust(width)} | {value} | {baseline} | {goal} |")
    return 0


def core(server: LocalServer, fake: FakeProviders, log_dir: Path, args: argparse.Namespace) -> None:
    print("throughput ...", flush=True)
    one, peak_one, insert_s, deliveries = measure_throughput(server, fake, 1, args.alerts, log_dir)
    two, peak_two, _, _ = measure_throughput(server, fake, 2, args.alerts, log_dir)
    # each critical alert: PagerDuty, Slack, Sentry, and the seed escalation's first on-call page
    report(f"throughput, 1 dispatcher ({deliveries:,} deliveries)", f"{one:,.0f} deliveries/s", "",
           "goal >= 3,000/s")
    report("throughput, 2 dispatchers", f"{two:,.0f} deliveries/s", f"{two / one:.2f}x one dispatcher")
    report(f"INSERT of {args.alerts} alerts in one transaction", f"{insert_s * 1000:.0f} ms", "")
    report("dispatcher peak memory (VmHWM)", f"{max(peak_one, peak_two):.0f} MB", "", "goal < 100 MB")

    insert_cost(server)


def insert_cost(server: LocalServer) -> None:
    print("insert cost ...", flush=True)
    url = fresh_database(server, "pgalert_bench_insert")
    alerts, plain, alerts_tx, plain_tx = measure_insert_cost(url, rounds=5, per_round=400)
    report("INSERT rate, autocommit", f"{alerts:,.0f}/s", f"plain table {plain:,.0f}/s = {alerts / plain:.2f}",
           "goal >= 0.6")
    report("INSERT rate, in one transaction", f"{alerts_tx:,.0f}/s",
           f"plain table {plain_tx:,.0f}/s = {alerts_tx / plain_tx:.2f}")
    hygiene.run(fresh_database(server, "pgalert_bench_hygiene"), report)
    hygiene.run_at_scale(fresh_database(server, "pgalert_bench_hygiene_scale"), report)


if __name__ == "__main__":
    sys.exit(main())
