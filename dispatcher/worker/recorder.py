"""The recorder: writes results back in batches, never dropping one while the database is away."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

import psycopg

from dispatcher import logs
from dispatcher.worker.backoff import Backoff
from dispatcher.worker.connector import Connector, Session
from dispatcher.worker.inflight import InFlight

RECORD_BATCH_MAX = 500
RECORD_GATHER_SECONDS = 0.005


class Recorder:
    def __init__(self, connector: Connector, inflight: InFlight, stopping: threading.Event,
                 recorded: Callable[[], None], clean: Callable[[str | None], str | None]):
        self._connector = connector
        self._inflight = inflight
        self._stopping = stopping
        self._recorded = recorded  # called after each batch is written: the claimer has room again
        self._clean = clean
        # appended from any thread (deque appends are atomic), taken only by the recorder, which `ready`
        # wakes once per batch rather than once per result
        self.results: collections.deque[dict] = collections.deque()
        self.ready = threading.Event()
        self.done = threading.Event()
        self.pending: list[dict] = []  # taken from `results`, not yet written: what salvage() writes if this dies

    def add(self, row: dict) -> None:
        self.results.append(row)
        if not self.ready.is_set():
            self.ready.set()

    def run(self) -> None:
        backoff = Backoff()
        pending = self.pending
        session: Session | None = None
        while True:
            if not pending:
                # cleared before looking, so a result appended after the look sets it again and ends the wait
                self.ready.clear()
                if not self.results:
                    # idle first: a send appends its result before it stops counting as in flight
                    if self._stopping.is_set() and self._inflight.idle() and not self.results:
                        break
                    self.ready.wait(0.2)
                    continue
                # gather for a moment: each recording call has a fixed cost, and a few ms here delay no send.
                # Sleeping, not waking per result: a queue.Queue woke this thread for every result, and at full
                # load 7% of the interpreter lock's samples (py-spy) were that wake-up.
                time.sleep(RECORD_GATHER_SECONDS)
                while self.results and len(pending) < RECORD_BATCH_MAX:
                    pending.append(self.results.popleft())
            try:
                if session is None or session.closed:
                    session = self._connector.session("record")
                self.complete(session, pending)
                backoff.reset()
            except psycopg.OperationalError as error:
                if session is not None:
                    session.close()
                session = None
                delay = backoff.next()
                logs.warning("could not record results; keeping them", count=len(pending),
                             error=self._clean(str(error)), retry_in=round(delay, 2))
                if self._stopping.is_set() and backoff.current >= 4:
                    logs.error("giving up recording at shutdown; leases will expire", count=len(pending))
                    break
                time.sleep(delay)
                continue
            self._inflight.recorded(r["delivery_id"] for r in pending)
            pending.clear()
            self._recorded()
        if session is not None:
            session.close()
        self.done.set()

    def salvage(self) -> None:
        """After this recorder's thread died: write what it held once more, on a session of its own. A result
        lost here is a message sent again by another dispatcher after its lease, so it is worth the try."""
        rows = self.pending + list(self.results)
        self.pending.clear()
        self.results.clear()
        if not rows:
            return
        try:
            with self._connector.session("record") as session:
                self.complete(session, rows)
        except Exception as error:  # noqa: BLE001 - whatever it is, it is logged and the process exits
            logs.error("results lost; their deliveries will be sent again after their lease", count=len(rows),
                       error=self._clean(f"{type(error).__name__}: {error}"))
            return
        self._inflight.recorded(r["delivery_id"] for r in rows)

    def complete(self, session: Session, results: list[dict]) -> None:
        """Record a batch; a result the database refuses is recorded alone, stripped to what must be kept."""
        queries = session.queries
        try:
            queries.complete(results)
            return
        except psycopg.OperationalError:
            raise
        except psycopg.Error as error:
            logs.error("results refused by the database; recording one by one", error=self._clean(str(error)))
        for result in results:
            try:
                queries.complete([result])
            except psycopg.OperationalError:
                raise
            except psycopg.Error as error:
                plain = {**result, "error": f"unrecordable result ({type(error).__name__})", "provider_reference": None}
                try:
                    queries.complete([plain])
                except psycopg.OperationalError:
                    raise
                except psycopg.Error:
                    logs.error("dropped a result; its lease will expire and it will be retried",
                               delivery_id=result["delivery_id"])
