"""An in-memory stand-in for PostgreSQL and the HTTP loop, so the dispatcher's decisions are tested without a
server or a subprocess (procrastinate's InMemoryConnector is the model). It keeps the contract of the SQL the
dispatcher calls (monitoring_claim_deliveries, monitoring_complete_deliveries, monitoring_release_deliveries,
monitoring_reserve_send_slots): a claim counts an attempt and leases the row to one dispatcher, a result moves
only a row still leased to its sender, `deferred` gives the attempt back. What it does not model (routing,
holds, pacing inside the claim) is tested against PostgreSQL in tests/sql and tests/integration."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psycopg

from dispatcher.http import SendFailed, SendTimeout
from dispatcher.providers.base import HttpResponse, Request

FINAL = ("succeeded", "failed", "skipped")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Row:
    id: int
    provider: str
    action: str
    alert: dict
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: dt.datetime = field(default_factory=now)
    claimed_by: str | None = None
    last_error: str | None = None
    last_http_status: int | None = None
    provider_reference: str | None = None


def stored_alert(alert_id: int) -> dict:
    """An alert as the claim returns it (the seed's critical payment failure)."""
    stamp = now().isoformat()
    return {"id": alert_id, "alert_type": "payment_failure", "severity": "critical", "title": "Test",
            "message": "Test PagerDuty", "source": None, "details": {}, "labels": {}, "status": "open",
            "dedup_key": f"payment_failure:{alert_id}", "occurred_at": stamp, "created_at": stamp,
            "occurrence_count": 1}


class InMemoryDatabase:
    """The tables the dispatcher touches, and the switches a test turns: the server down, a result refused."""

    def __init__(self, schema_version: str | None = None):
        from dispatcher.worker.loop import EXPECTED_SCHEMA

        self.lock = threading.RLock()
        self.rows: dict[int, Row] = {}
        self.attempts: list[dict] = []  # monitoring_delivery_attempts
        self.channels: list[tuple[str, str, dict, dict]] = []
        self.slots: dict[str, tuple[int, float]] = {}  # channel -> (slots left now, seconds until the next)
        self.schema_version = EXPECTED_SCHEMA if schema_version is None else schema_version
        self.scheduler: tuple[float, bool] | Exception = (5.0, True)
        self.down = False
        self.read_only = False  # a standby: every write fails, as on a server that was demoted
        self.refuse: Callable[[dict], bool] = lambda result: False
        self.sessions: list[str] = []  # the name of every session opened, in order
        self.complete_calls: list[int] = []  # the size of each batch recorded
        self.notified = threading.Event()
        self.to_poll: list[tuple[int, str, str, str]] = []  # monitoring_messages_to_poll's answer
        self.polled: list[tuple[str, str, str | None]] = []  # what monitoring_message_polled was told

    def insert(self, provider: str, action: str = "trigger", alert: dict | None = None) -> int:
        with self.lock:
            row_id = len(self.rows) + 1
            self.rows[row_id] = Row(row_id, provider, action, {**stored_alert(row_id), **(alert or {})})
        self.notified.set()
        return row_id

    def status(self, row_id: int) -> str:
        with self.lock:
            return self.rows[row_id].status


class InMemoryQueries:
    """db.DispatcherQueries over an InMemoryDatabase, one method per named query the dispatcher runs."""

    def __init__(self, database: InMemoryDatabase, dispatcher_id: str):
        self.db = database
        self.dispatcher_id = dispatcher_id

    def _check(self) -> None:
        if self.db.down:
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    def schema_version(self) -> str | None:
        self._check()
        return self.db.schema_version

    def claim(self, limit: int, lease_seconds: float, paces: dict | None = None) -> list[tuple]:
        self._check()
        if self.db.read_only:
            raise psycopg.errors.ReadOnlySqlTransaction("cannot execute UPDATE in a read-only transaction")
        with self.db.lock:
            due = [r for r in self.db.rows.values()
                   if r.status == "pending" and r.next_attempt_at <= now()][:limit]
            for row in due:
                row.status, row.claimed_by, row.attempts = "sending", self.dispatcher_id, row.attempts + 1
            return [(r.id, r.attempts, r.provider, r.action, None, {}, f"pgalert-{r.alert.get('id')}", r.alert)
                    for r in due]

    def complete(self, results: list[dict]) -> int:
        self._check()
        with self.db.lock:
            refused = [r for r in results if self.db.refuse(r)]
            if refused:
                raise psycopg.DataError(f"invalid input for delivery {refused[0]['delivery_id']}")
            self.db.complete_calls.append(len(results))
            moved = 0
            for result in results:
                row = self.db.rows.get(result["delivery_id"])
                if row is None:
                    continue
                if result["outcome"] != "deferred":
                    self.db.attempts.append({**result, "dispatcher": self.dispatcher_id})
                if row.claimed_by != self.dispatcher_id or row.attempts != result["attempt"]:
                    continue
                outcome = result["outcome"]
                row.status = "pending" if outcome in ("retry", "deferred") else outcome
                row.attempts -= outcome == "deferred"
                if outcome in ("retry", "deferred"):
                    row.next_attempt_at = (dt.datetime.fromisoformat(result["retry_at"]) if result["retry_at"]
                                           else now())
                if outcome != "deferred":
                    row.last_error, row.last_http_status = result["error"], result["http_status"]
                row.provider_reference = result["provider_reference"] or row.provider_reference
                row.claimed_by = None
                moved += 1
            return moved

    def release(self, delivery_ids: list[int]) -> int:
        self._check()
        with self.db.lock:
            released = 0
            for row_id in delivery_ids:
                row = self.db.rows[row_id]
                if row.claimed_by == self.dispatcher_id and row.status == "sending":
                    row.status, row.attempts, row.claimed_by, row.next_attempt_at = "pending", row.attempts - 1, None, now()
                    released += 1
            return released

    def reserve_slots(self, provider: str, count: int, interval_seconds: float, burst: int) -> tuple[int, float]:
        self._check()
        with self.db.lock:
            left, wait = self.db.slots.get(provider, (count, 0.0))
            granted = min(left, count)
            self.db.slots[provider] = (left - granted, wait)
            return granted, wait

    def channels(self) -> list[tuple[str, str, dict, dict]]:
        self._check()
        return list(self.db.channels)

    def seconds_until_next_due(self) -> float | None:
        self._check()
        with self.db.lock:
            pending = [r.next_attempt_at for r in self.db.rows.values() if r.status == "pending"]
        return (min(pending) - now()).total_seconds() if pending else None

    def queue(self) -> list[tuple[str, int, float]]:
        self._check()
        return []

    def check_scheduler(self) -> tuple[float, bool]:
        self._check()
        if isinstance(self.db.scheduler, Exception):
            raise self.db.scheduler
        return self.db.scheduler

    def scheduler_mode(self, requested: str) -> tuple[str, str | None]:
        self._check()
        return ("pg_cron", None) if requested != "dispatcher" else ("dispatcher", None)

    def due_scheduled_jobs(self) -> list[tuple]:
        self._check()
        return []

    def run_scheduled_job(self, job_name: str, tick: object, timeout_ms: int | None) -> bool:
        self._check()
        return False

    def claim_health_checks(self, limit: int) -> list[tuple]:
        self._check()
        return []

    def record_health_check(self, *args: object) -> None:
        self._check()

    def ensure_health_check(self, *args: object) -> None:
        self._check()

    def messages_to_poll(self, limit: int) -> list[tuple[int, str, str, str]]:
        self._check()
        with self.db.lock:
            return self.db.to_poll[:limit]

    def message_polled(self, reference: str, status: str, error_code: str | None) -> str:
        self._check()
        with self.db.lock:
            self.db.polled.append((reference, status, error_code))
            self.db.to_poll = [row for row in self.db.to_poll if row[3] != reference]
        return "noted"


class InMemorySession:
    def __init__(self, database: InMemoryDatabase, dispatcher_id: str):
        self.db = database
        self.queries = InMemoryQueries(database, dispatcher_id)
        self.closed = False

    @property
    def broken(self) -> bool:
        return self.db.down

    def listen(self) -> None:
        self.queries._check()

    def notifications(self, timeout: float) -> Iterable[object]:
        self.queries._check()
        if self.db.notified.wait(timeout):
            self.db.notified.clear()
            yield "monitoring_deliveries"

    def ping(self) -> None:
        self.queries._check()

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> InMemorySession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InMemoryConnector:
    def __init__(self, database: InMemoryDatabase, dispatcher_id: str = "memory:1"):
        self.db = database
        self.dispatcher_id = dispatcher_id

    def session(self, name: str, *, durable: bool = True) -> InMemorySession:
        self.db.sessions.append(name)
        if self.db.down:
            raise psycopg.OperationalError("connection refused")
        return InMemorySession(self.db, self.dispatcher_id)


Reply = HttpResponse | SendTimeout | SendFailed


class ScriptedClient:
    """The HTTP loop, answering each request at once on the caller's thread with what `answer` says."""

    def __init__(self, answer: Callable[[Request], Reply] | None = None):
        self.answer = answer or (lambda request: HttpResponse(202, {}, b'{"status": "success"}'))
        self.sent: list[Request] = []
        self.closed = False

    def submit(self, request: Request | Callable[[], Request | None], done: Callable[[Reply, float], None]) -> None:
        if callable(request):
            request = request()
            if request is None:
                return
        self.sent.append(request)
        done(self.answer(request), 0.001)

    def close(self) -> None:
        self.closed = True
