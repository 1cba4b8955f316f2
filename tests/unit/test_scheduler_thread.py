"""The dispatcher's scheduler thread: it runs the due ticks only while the dispatchers are the scheduler in
force, and shows which is on /healthz and in metrics (#37, 1). The SQL that makes a tick run once is tested
in tests/sql/test_scheduler.py."""

from __future__ import annotations

from prometheus_client import generate_latest

from dispatcher.metrics import Metrics
from dispatcher.worker.scheduler import run_due_jobs


class Queries:
    def __init__(self, mode: str, reason: str | None, taken_elsewhere: frozenset[str] = frozenset()):
        self.mode, self.reason, self.taken_elsewhere = mode, reason, taken_elsewhere
        self.ran: list[tuple[str, int | None]] = []
        self.asked: list[str] = []

    def scheduler_mode(self, requested: str) -> tuple[str, str | None]:
        self.asked.append(requested)
        return self.mode, self.reason

    def due_scheduled_jobs(self) -> list[tuple]:
        return [("pgalert_heartbeat", "12:00", None), ("pgalert_rule_slow", "12:00", 250), ("busy", "12:00", None)]

    def run_scheduled_job(self, job_name: str, tick: object, timeout_ms: int | None) -> bool:
        self.ran.append((job_name, timeout_ms))
        return job_name not in self.taken_elsewhere


def test_the_dispatchers_run_every_due_tick_where_pg_cron_cannot():
    queries, metrics = Queries("dispatcher", "pg_cron is not loaded by this server (shared_preload_libraries)",
                               frozenset({"busy"})), Metrics()
    assert run_due_jobs(queries, "auto", metrics) == 2  # the third is another dispatcher's
    assert queries.asked == ["auto"]
    assert queries.ran == [("pgalert_heartbeat", None), ("pgalert_rule_slow", 250), ("busy", None)]
    _, state = metrics.healthy(60)
    assert state["scheduler"] == "dispatcher"
    assert state["scheduler_reason"] == "pg_cron is not loaded by this server (shared_preload_libraries)"
    text = generate_latest(metrics.registry).decode()
    assert 'pgalert_scheduler_mode{mode="dispatcher"} 1.0' in text and 'pgalert_scheduler_mode{mode="pg_cron"} 0.0' in text
    assert 'pgalert_scheduled_job_runs_total{job="pgalert_heartbeat"} 1.0' in text


def test_under_pg_cron_the_dispatchers_run_nothing_and_say_so():
    queries, metrics = Queries("pg_cron", None), Metrics()
    assert run_due_jobs(queries, "auto", metrics) == 0
    assert queries.ran == []
    assert metrics.healthy(60)[1]["scheduler"] == "pg_cron"
