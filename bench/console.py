"""The console under load, each page beside the same queries run bare from a client in the same run.

- the open-alerts page with 5,000 open alerts (it shows the newest 500), server side: GET to the last byte, against
  its one query run directly;
- one alert's page with 1,000 attempts, against its six queries run directly;
- 200 pages on one serve process holding their Server-Sent Events streams: the time from an INSERT until every
  one of them has heard of it, and serve's memory then.
"""

from __future__ import annotations

import re
import signal
import socket
import statistics
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import requests

from devtools.serve import role_login, start_serve
from dispatcher.console.auth import hash_password
from dispatcher.console.views import Filters
from dispatcher.db import named_queries

QUERIES = named_queries(Path(__file__).resolve().parents[1] / "dispatcher" / "console" / "queries.sql")
OPEN_ALERTS = 5000
ATTEMPTS = 1000
PAGES = 200
ROUNDS = 15
PASSWORD = "bench-password-123"


def median_ms(work, rounds: int = ROUNDS) -> float:
    work()  # warm: plans cached, templates compiled
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def signed_in(base: str) -> requests.Session:
    session = requests.Session()
    form = session.get(base + "/console/login", timeout=10).text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form).group(1)
    answer = session.post(base + "/console/login", data={"login": "bench", "password": PASSWORD, "csrf": csrf},
                          allow_redirects=False, timeout=10)
    assert answer.status_code == 303, answer.text[:300]
    return session


def listen_sse(base: str, cookie: str, heard: list[float], ready: threading.Barrier, stop: threading.Event) -> None:
    """One page's event stream, on a raw socket: the time each `alerts` event arrives."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"GET /console/events?since=bench HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     f"Cookie: pgalert_session={cookie}\r\nAccept: text/event-stream\r\n\r\n".encode())
        buffer = b""
        ready.wait()
        while not stop.is_set():
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                return
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                if b"event: alerts" in event:
                    heard.append(time.perf_counter())


def run(url: str, log_dir: Path, report) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT monitoring_console_save_user('bench', 'Bench', 'admin', %s)", (hash_password(PASSWORD),))
        conn.execute("DELETE FROM monitoring_routes")  # pages read deliveries; none are needed to be sent
        conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, source, details) "
                     "SELECT 'type_' || (n %% 40), (ARRAY['critical', 'warning', 'info'])[1 + n %% 3], "
                     "'bench alert ' || n, 'host-' || n, "
                     "jsonb_build_object('labels', jsonb_build_object('env', 'prod')) "
                     "FROM generate_series(1, %s) AS n", (OPEN_ALERTS,))
        story = conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) "
                             "VALUES ('story', 'critical', 'one alert, many attempts') RETURNING id").fetchone()[0]
        delivery = conn.execute("INSERT INTO monitoring_deliveries (alert_id, provider, action, status) "
                                "VALUES (%s, 'pagerduty', 'trigger', 'pending') RETURNING id", (story,)).fetchone()[0]
        conn.execute("INSERT INTO monitoring_delivery_attempts (delivery_id, attempt, dispatcher, started_at, "
                     "finished_at, outcome, http_status, error) "
                     "SELECT %s, n, 'bench', now() - make_interval(secs => %s - n), "
                     "now() - make_interval(secs => %s - n) + interval '40 ms', 'retry', 503, 'busy' "
                     "FROM generate_series(1, %s) AS n", (delivery, ATTEMPTS, ATTEMPTS, ATTEMPTS))
    serve, base = start_serve(role_login(url, "pgalert_bench_console", "monitoring_inbound,monitoring_console"),
                              log_dir / "console.log", "--log-level", "warning")
    try:
        session = signed_in(base)
        with psycopg.connect(url, autocommit=True) as conn:
            bare_list = median_ms(lambda: conn.execute(QUERIES["alerts"], Filters().params()).fetchall())
            page_list = median_ms(lambda: session.get(base + "/console/", timeout=30).raise_for_status())
            report(f"console: open alerts page, {OPEN_ALERTS:,} open", f"{page_list:.0f} ms",
                   f"its query bare {bare_list:.0f} ms = {page_list / bare_list:.1f}x", "goal < 300 ms")

            def bare_story() -> None:
                for name in ("alert", "alert_deliveries", "alert_attempts", "alert_holds", "alert_escalations",
                             "alert_inbound"):
                    conn.execute(QUERIES[name], {"alert_id": story}).fetchall()

            bare_detail = median_ms(bare_story)
            story_page = f"{base}/console/alerts/{story}"
            page_detail = median_ms(lambda: session.get(story_page, timeout=30).raise_for_status())
            report(f"console: alert page, {ATTEMPTS:,} attempts", f"{page_detail:.0f} ms",
                   f"its queries bare {bare_detail:.0f} ms = {page_detail / bare_detail:.1f}x", "goal < 200 ms")

            cookie = session.cookies["pgalert_session"]
            heard: list[list[float]] = [[] for _ in range(PAGES)]
            ready, stop = threading.Barrier(PAGES + 1), threading.Event()
            threads = [threading.Thread(target=listen_sse, args=(base, cookie, heard[i], ready, stop), daemon=True)
                       for i in range(PAGES)]
            for thread in threads:
                thread.start()
            ready.wait()
            time.sleep(2.0)  # every stream connected and past its first event
            for page in heard:
                page.clear()
            raised = time.perf_counter()
            conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('sse', 'info', 'seen?')")
            deadline = raised + 30
            while time.perf_counter() < deadline and not all(heard):
                time.sleep(0.01)
            reached = sum(1 for page in heard if page)
            slowest = max(page[0] for page in heard if page) - raised if reached else float("nan")
            rss = rss_mb(serve.pid)
            stop.set()
            report(f"console: {PAGES} open pages hear a new alert", f"{reached}/{PAGES} in {slowest * 1000:.0f} ms",
                   f"serve RSS {rss:.0f} MB", "goal: all, < 2 s; serve < 150 MB")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(20)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
