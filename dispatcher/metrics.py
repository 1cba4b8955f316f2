"""Prometheus metrics and a health endpoint, served on --metrics-port."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "pgalert_deliveries", "Delivery attempts by provider, action and outcome",
            ["provider", "action", "outcome"], registry=self.registry,
        )
        self.send_seconds = Histogram(
            "pgalert_send_seconds", "Time of one HTTP send to a provider", ["provider"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.queue_depth = Gauge(
            "pgalert_queue_depth", "Deliveries pending or being sent", ["provider"], registry=self.registry,
        )
        self.oldest_pending = Gauge(
            "pgalert_oldest_pending_seconds", "Age of the oldest undelivered delivery", registry=self.registry,
        )
        self.listener_connected = Gauge(
            "pgalert_listener_connected", "1 while the LISTEN connection is up", registry=self.registry,
        )
        self.scheduler_age = Gauge(
            "pgalert_scheduler_seconds_since_run",
            "Seconds since pgalert's heartbeat job last ran, under pg_cron or in a dispatcher (rules, escalations "
            "and releases run with it)",
            registry=self.registry,
        )
        self.scheduler_in_force = Gauge(
            "pgalert_scheduler_mode", "1 for the scheduler that runs pgalert's jobs as this dispatcher sees it: "
            "pg_cron, or the dispatchers (--scheduler)", ["mode"], registry=self.registry,
        )
        self.scheduled_runs = Counter(
            "pgalert_scheduled_job_runs", "Ticks of scheduled jobs this dispatcher ran (where pg_cron does not)",
            ["job"], registry=self.registry,
        )
        # whether pgalert's jobs run (their heartbeat is recent), as the last check found (None: not checked yet)
        self.scheduler_running: bool | None = None
        # who runs them ('pg_cron' or 'dispatcher'; None: not asked yet), and why pg_cron does not when it does not
        self.scheduler_mode: str | None = None
        self.scheduler_reason: str | None = None
        self.last_loop = time.monotonic()
        # why the dispatcher cannot do its work right now (schema missing or old, claims failing), or None
        self.problem: str | None = None

    def set_queue(self, rows: list[tuple[str, int, float]]) -> None:
        self.queue_depth.clear()
        oldest = 0.0
        for provider, depth, age in rows:
            self.queue_depth.labels(provider).set(depth)
            oldest = max(oldest, age or 0.0)
        self.oldest_pending.set(oldest)

    def set_scheduler(self, mode: str, reason: str | None) -> None:
        for each in ("pg_cron", "dispatcher"):
            self.scheduler_in_force.labels(each).set(1 if each == mode else 0)
        self.scheduler_mode, self.scheduler_reason = mode, reason

    def healthy(self, stale_after: float) -> tuple[bool, dict]:
        loop_age = time.monotonic() - self.last_loop
        listening = self.listener_connected._value.get() == 1  # noqa: SLF001 - prometheus keeps no public getter
        problem = self.problem
        state = {"listener_connected": listening, "loop_age_seconds": round(loop_age, 3), "problem": problem,
                 # said, not failed: restarting dispatchers cannot mend pg_cron, and they still deliver
                 "scheduled_jobs_running": self.scheduler_running,
                 "scheduler": self.scheduler_mode, "scheduler_reason": self.scheduler_reason}
        return listening and loop_age < stale_after and problem is None, state


def serve(metrics: Metrics, host: str, port: int, stale_after: float) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # two writes per reply: avoid the delayed-ACK stall

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/metrics":
                body, status, kind = generate_latest(metrics.registry), 200, CONTENT_TYPE_LATEST
            elif self.path in ("/healthz", "/health"):
                ok, state = metrics.healthy(stale_after)
                body, status, kind = json.dumps({"ok": ok, **state}).encode(), 200 if ok else 503, "application/json"
            else:
                body, status, kind = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
