"""The hot path against its floor (`make bench`, or `python -m bench.run --only hotpath`).

Every system sends to the same out-of-process receiver (bench/receiver.py), which answers as fast as the machine
allows, and the systems alternate round by round, so drift on a shared machine hits each alike:
- floor-1: a trigger NOTIFY -> a LISTEN connection -> one keep-alive POST (libcurl): the least any design does;
- floor-2: floor-1 plus one `UPDATE ... (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING` claim per job;
- pgalert: an alert type routed to PagerDuty only, one dispatcher, pacing on (a pace no send reaches, so its
  cost is paid and nothing waits);
- pgqueuer: the peer, when the optional `bench` extra is installed: the job enqueued in the inserting
  transaction, a handler that POSTs to the receiver on a keep-alive connection.
Latency is INSERT commit -> the receiver has read the request (CLOCK_MONOTONIC on both sides). Throughput
drains a backlog with one worker: pgalert against a minimal claim-then-send dispatcher (claim 100, POST each,
mark them done in one statement), each in a process of its own. Then 2 and 4 dispatchers drain critical alerts
(PagerDuty, Slack, Sentry and the first on-call page) and PostgreSQL's deadlock counter is read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psycopg
import pycurl

# PagerDuty only: no route to Slack and Sentry, and no on-call page from the seed's escalation policy
ROUTE = ("INSERT INTO monitoring_routes (alert_type, provider) VALUES ('bench_hot', 'pagerduty'); "
         "DELETE FROM monitoring_escalation_assignments")
PACING_ON = "pagerduty=1000000/1:1000"  # on: every send reserves its slot; no send ever waits for one


class Receiver:
    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="pgalert-receiver-")
        port_file = Path(self._dir) / "port"
        self.process = subprocess.Popen([sys.executable, "-m", "bench.receiver", str(port_file)])
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("the receiver did not start")
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{port_file.read_text()}"

    def take(self) -> list[tuple[int, float]]:
        with urllib.request.urlopen(self.base + "/take", timeout=30) as reply:
            return [tuple(r) for r in json.load(reply)]

    def wait_for(self, keys: set[int], timeout: float = 120) -> dict[int, float]:
        """Arrival time of each key, once all have arrived."""
        arrived: dict[int, float] = {}
        deadline = time.monotonic() + timeout
        while not keys <= arrived.keys():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(keys - arrived.keys())} of {len(keys)} sends never reached the receiver")
            for key, at in self.take():
                arrived.setdefault(key, at)
            time.sleep(0.05)
        return arrived

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def poster(url: str) -> Callable[[int], None]:
    """POST {"dedup_key": "bench-N"} on one kept-alive connection (libcurl sets TCP_NODELAY)."""
    handle = pycurl.Curl()
    handle.setopt(pycurl.URL, url)
    handle.setopt(pycurl.HTTPHEADER, ["Content-Type: application/json", "Expect:"])
    handle.setopt(pycurl.WRITEFUNCTION, len)

    def post(key: int) -> None:
        handle.setopt(pycurl.POSTFIELDS, b'{"dedup_key":"bench-%d"}' % key)
        handle.perform()
    return post


def paced(count: int, rate: float):
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield i


def latencies(commits: dict[int, float], arrived: dict[int, float]) -> list[float]:
    return [(arrived[key] - at) * 1000 for key, at in commits.items()]


# ---- floors -------------------------------------------------------------------------------------------------

FLOOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_floor1 (id bigint PRIMARY KEY);
CREATE OR REPLACE FUNCTION bench_floor1_notify() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_notify('bench_floor1', NEW.id::text); RETURN NULL; END $$;
CREATE OR REPLACE TRIGGER bench_floor1_notify AFTER INSERT ON bench_floor1
FOR EACH ROW EXECUTE FUNCTION bench_floor1_notify();
CREATE TABLE IF NOT EXISTS bench_jobs (id bigint PRIMARY KEY, done boolean NOT NULL DEFAULT false);
CREATE INDEX IF NOT EXISTS bench_jobs_pending ON bench_jobs (id) WHERE NOT done;
CREATE OR REPLACE FUNCTION bench_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_notify('bench_jobs', ''); RETURN NULL; END $$;
CREATE OR REPLACE TRIGGER bench_jobs_notify AFTER INSERT ON bench_jobs
FOR EACH STATEMENT EXECUTE FUNCTION bench_jobs_notify();
"""
CLAIM_ONE = ("UPDATE bench_jobs SET done = true WHERE id = (SELECT id FROM bench_jobs WHERE NOT done ORDER BY id "
             "FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING id")


def floor(url: str, receiver: Receiver, samples: int, rate: float, first_key: int, claim: bool) -> list[float]:
    """floor-1 (claim=False) or floor-2 (claim=True): a listener thread that POSTs what each NOTIFY announces."""
    channel = "bench_jobs" if claim else "bench_floor1"
    ready, done = threading.Event(), threading.Event()
    post = poster(receiver.base + "/v2/enqueue")

    def listen() -> None:
        with psycopg.connect(url, autocommit=True) as listener:
            listener.execute(f"LISTEN {channel}")
            ready.set()
            while not done.is_set():
                if not claim:
                    for note in listener.notifies(timeout=0.2):
                        post(int(note.payload))
                    continue
                # the connection runs no query while notifies() waits on it: take the wake-up, then claim
                woken = list(listener.notifies(timeout=0.2, stop_after=1))
                while woken and (row := listener.execute(CLAIM_ONE).fetchone()) is not None:
                    post(row[0])

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait()
    commits: dict[int, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for i in paced(samples, rate):
            conn.execute(f"INSERT INTO {'bench_jobs' if claim else 'bench_floor1'} (id) VALUES (%s)", (first_key + i,))
            commits[first_key + i] = time.monotonic()
    arrived = receiver.wait_for(set(commits))
    done.set()
    thread.join()
    return latencies(commits, arrived)


# ---- pgalert ------------------------------------------------------------------------------------------------

def start_pgalert(url: str, receiver: Receiver, name: str, log_dir: Path, pacing: str = PACING_ON,
                  env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "PAGERDUTY_INTEGRATION_KEY": "0123456789abcdef0123456789abcdef",
           "PAGERDUTY_EVENTS_URL": receiver.base + "/v2/enqueue", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "dispatch", "--pacing", pacing, "--dispatcher-id", name,
         "--log-level", "warning"],
        env=env, stderr=open(log_dir / f"{name}.log", "ab"),  # noqa: SIM115 - owned by the child
    )


def insert_alert(conn: psycopg.Connection, i: str) -> int:
    return conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message, dedup_key) "
                        "VALUES ('bench_hot', 'critical', 'Hot path probe', 'bench', %s) RETURNING id",
                        (f"hot-{i}-probe",)).fetchone()[0]  # no trailing number: the receiver keys on the alert id


def pgalert_latency(url: str, receiver: Receiver, samples: int, rate: float, log_dir: Path, name: str) -> list[float]:
    dispatcher = start_pgalert(url, receiver, name, log_dir)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            receiver.wait_for({insert_alert(conn, f"{name}-ready")}, timeout=60)  # the dispatcher is connected
            commits: dict[int, float] = {}
            for i in paced(samples, rate):
                alert_id = insert_alert(conn, f"{name}-{i}")  # a key of its own each round: no dedup
                commits[alert_id] = time.monotonic()
            return latencies(commits, receiver.wait_for(set(commits)))
    finally:
        dispatcher.send_signal(signal.SIGTERM)
        dispatcher.wait(20)


# ---- pgqueuer -----------------------------------------------------------------------------------------------

def pgqueuer_available() -> bool:
    try:
        import pgqueuer  # noqa: F401
    except ImportError:
        return False
    return True


def pgqueuer_latency(url: str, receiver: Receiver, samples: int, rate: float, first_key: int,
                     log_dir: Path) -> list[float]:
    from pgqueuer.db import SyncPsycopgDriver
    from pgqueuer.queries import SyncQueries

    worker = subprocess.Popen([sys.executable, "-m", "bench.peer_pgqueuer", url, receiver.base + "/v2/enqueue"],
                              stderr=open(log_dir / "pgqueuer.log", "ab"))  # noqa: SIM115 - owned by the child
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS bench_app (id bigint PRIMARY KEY)")
            queries = SyncQueries(SyncPsycopgDriver(conn))

            def enqueue(key: int) -> None:
                with conn.transaction():  # the job commits with the application's row, or not at all
                    conn.execute("INSERT INTO bench_app (id) VALUES (%s)", (key,))
                    queries.enqueue("page", b'{"dedup_key":"bench-%d"}' % key)

            enqueue(first_key - 1)
            receiver.wait_for({first_key - 1}, timeout=60)
            commits: dict[int, float] = {}
            for i in paced(samples, rate):
                enqueue(first_key + i)
                commits[first_key + i] = time.monotonic()
            return latencies(commits, receiver.wait_for(set(commits)))
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()


# ---- throughput ---------------------------------------------------------------------------------------------

def minimal_throughput(url: str, receiver: Receiver, jobs: int) -> float:
    """The minimal durable dispatcher (bench/minimal_dispatcher.py) in its own process, as pgalert's is: neither
    shares an interpreter lock with the benchmark."""
    done = subprocess.run([sys.executable, "-m", "bench.minimal_dispatcher", url, receiver.base + "/v2/enqueue",
                           str(jobs)], check=True, capture_output=True, text=True, timeout=600)
    receiver.take()
    return float(done.stdout.strip())


def pgalert_throughput(fresh_database: Callable[[str], str], receiver: Receiver, alerts: int, dispatchers: int,
                       log_dir: Path, critical_routes: bool = False) -> tuple[float, int, int]:
    """(deliveries a second, deliveries, deadlocks PostgreSQL counted in that database meanwhile)."""
    url = fresh_database("pgalert_bench_hotpath_drain")
    with psycopg.connect(url, autocommit=True) as conn:
        if not critical_routes:
            conn.execute(ROUTE)
        alert_type = "'drain_' || (g %% 50)" if critical_routes else "'bench_hot'"
        conn.execute(f"INSERT INTO monitoring_alerts (alert_type, severity, title, message, dedup_key) "
                     f"SELECT {alert_type}, 'critical', 'Drain probe', 'bench', 'drain-' || g || '-probe' "
                     f"FROM generate_series(1, %s) AS g", (alerts,))
        expected = conn.execute("SELECT count(*) FROM monitoring_deliveries").fetchone()[0]
        conn.execute("VACUUM ANALYZE")
        deadlocks_before = deadlocks(conn)
        env = fake_env(receiver) if critical_routes else None
        processes = [start_pgalert(url, receiver, f"drain{dispatchers}_{i}", log_dir, env=env)
                     for i in range(dispatchers)]
        deadline = time.monotonic() + 600
        while conn.execute("SELECT count(*) FROM monitoring_deliveries "
                           "WHERE status NOT IN ('succeeded', 'failed', 'skipped')").fetchone()[0]:
            if time.monotonic() > deadline:
                raise RuntimeError("the drain did not finish in 10 minutes")
            time.sleep(0.1)
        first, last, succeeded = conn.execute(
            "SELECT min(started_at), max(finished_at), count(*) FILTER (WHERE outcome = 'succeeded') "
            "FROM monitoring_delivery_attempts").fetchone()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(20)
        time.sleep(1.0)  # the statistics collector publishes counters about once a second
        conn.execute("SELECT pg_stat_clear_snapshot()")
        deadlocked = deadlocks(conn) - deadlocks_before
    receiver.take()
    if succeeded != expected:
        raise RuntimeError(f"drain: {succeeded} of {expected} deliveries succeeded")
    return expected / (last - first).total_seconds(), expected, deadlocked


def deadlocks(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


def fake_env(receiver: Receiver) -> dict[str, str]:
    """Every provider of a critical alert at the receiver: it answers 202 to any path."""
    return {"SLACK_WEBHOOK_URL": receiver.base + "/slack", "SENTRY_DSN": f"http://{'a' * 32}@127.0.0.1:"
            f"{receiver.base.rsplit(':', 1)[1]}/1", "PGALERT_ALLOW_PLAIN_HTTP": "1"}


# ---- the run ------------------------------------------------------------------------------------------------

def run(fresh_database: Callable[[str], str], log_dir: Path, report: Callable[..., None],
        percentile: Callable[[list[float], float], float], rounds: int = 3, samples: int = 600, rate: float = 100.0,
        drain: int = 20_000) -> None:
    receiver = Receiver()
    try:
        _run(fresh_database, log_dir, report, percentile, receiver, rounds, samples, rate, drain)
    finally:
        receiver.stop()


def _run(fresh_database, log_dir, report, percentile, receiver, rounds, samples, rate, drain) -> None:
    floors_url = fresh_database("pgalert_bench_hotpath_floors")
    with psycopg.connect(floors_url, autocommit=True) as conn:
        conn.execute(FLOOR_SCHEMA)
    pgalert_url = fresh_database("pgalert_bench_hotpath")
    with psycopg.connect(pgalert_url, autocommit=True) as conn:
        conn.execute(ROUTE)
    peer = pgqueuer_available()
    if peer:
        peer_url = fresh_database("pgalert_bench_hotpath_pgqueuer")
        subprocess.run([sys.executable, "-m", "bench.peer_pgqueuer", peer_url, "--install"], check=True)
    systems = ["floor-1", "floor-2", "pgalert"] + (["pgqueuer"] if peer else [])
    found: dict[str, list[list[float]]] = {s: [] for s in systems}
    for r in range(rounds):
        print(f"  round {r + 1} of {rounds}: latency", flush=True)
        key = 1_000_000 * (r + 1)
        for system in systems:
            if system == "floor-1":
                found[system].append(floor(floors_url, receiver, samples, rate, key, claim=False))
            elif system == "floor-2":
                found[system].append(floor(floors_url, receiver, samples, rate, key, claim=True))
            elif system == "pgalert":
                found[system].append(pgalert_latency(pgalert_url, receiver, samples, rate, log_dir, f"hot{r}"))
            else:
                found[system].append(pgqueuer_latency(peer_url, receiver, samples, rate, key, log_dir))
    for r in range(rounds):
        p = {s: (percentile(found[s][r], 50), percentile(found[s][r], 99)) for s in systems}
        f2 = p["floor-2"]
        line = ", ".join(f"{s} {p[s][0]:.2f}/{p[s][1]:.2f}" for s in systems)
        report(f"hot path round {r + 1}: p50/p99 ms", line,
               f"pgalert = {p['pgalert'][0] / f2[0]:.2f}x / {p['pgalert'][1] / f2[1]:.2f}x floor-2",
               "goal <= 1.5x / 2x")
    every = {s: [x for run in found[s] for x in run] for s in systems}
    p = {s: (percentile(every[s], 50), percentile(every[s], 99)) for s in systems}
    for s in systems:
        report(f"hot path {s} (all rounds)", f"p50 {p[s][0]:.2f} ms, p99 {p[s][1]:.2f} ms",
               f"{p[s][0] / p['floor-2'][0]:.2f}x / {p[s][1] / p['floor-2'][1]:.2f}x floor-2")
    if not peer:
        report("hot path pgqueuer", "not run", "pip install -e '.[bench]' to add the peer")

    ratios = []
    for r in range(rounds):
        print(f"  round {r + 1} of {rounds}: one-worker drain of {drain:,}", flush=True)
        minimal = minimal_throughput(floors_url, receiver, drain)
        pgalert, _, _ = pgalert_throughput(fresh_database, receiver, drain, 1, log_dir)
        ratios.append(pgalert / minimal)
        report(f"one-worker drain round {r + 1}", f"pgalert {pgalert:,.0f}/s", f"minimal {minimal:,.0f}/s = "
               f"{pgalert / minimal:.2f}x", "goal >= 1.0x")
    report("one-worker drain, all rounds", f"{sorted(ratios)[len(ratios) // 2]:.2f}x minimal (median)",
           f"rounds {', '.join(f'{x:.2f}' for x in ratios)}")
    for dispatchers in (2, 4):
        print(f"  {dispatchers} dispatchers draining critical alerts", flush=True)
        rate_found, deliveries, deadlocked = pgalert_throughput(fresh_database, receiver, drain, dispatchers, log_dir,
                                                                critical_routes=True)
        report(f"{dispatchers} dispatchers, {drain:,} critical alerts ({deliveries:,} deliveries)",
               f"{rate_found:,.0f}/s", f"deadlocks {deadlocked}", "goal 0 deadlocks")
