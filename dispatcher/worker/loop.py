"""The dispatcher's threads: wake on NOTIFY or a timer, claim with SKIP LOCKED, send, record.

Three threads talk to PostgreSQL, each on its own session of the connector:
- the listener LISTENs and sets `wake`; NOTIFY is only a hint, so a missed one costs at most a poll interval;
- the claimer (the main thread) claims due deliveries, applies pacing, and hands them to the sender;
- the recorder (recorder.py) writes results back in batches, never dropping one while the database is away.
When one of them (or the probes' or heartbeat's thread) dies, the dispatcher stops and exits non-zero; when the
recorder died, it first stops sending (see _essential).
Requests are built, sent and their replies judged on the HTTP loop's thread (sending.py, dispatcher.http),
outside any transaction. Health probes (health.py), the polling of Twilio for statuses whose callback never
came (statuses.py) and the scheduled jobs, where the dispatchers run them (scheduler.py), have a thread each.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping

import psycopg

from dispatcher import db, logs
from dispatcher.http import HttpClient
from dispatcher.metrics import Metrics
from dispatcher.migrate import discover_migrations
from dispatcher.providers import all_secrets
from dispatcher.providers.base import Delivery, Provider, Unconfigured
from dispatcher.redact import redact
from dispatcher.settings import Settings
from dispatcher.worker import pacing
from dispatcher.worker.backoff import Backoff
from dispatcher.worker.channels import ChannelBook
from dispatcher.worker.connector import Connector, PsycopgConnector, Session
from dispatcher.worker.health import probe_forever
from dispatcher.worker.heartbeat import heartbeat_forever
from dispatcher.worker.inflight import InFlight
from dispatcher.worker.outcomes import to_delivery
from dispatcher.worker.recorder import Recorder
from dispatcher.worker.scheduler import schedule_forever
from dispatcher.worker.sending import Client, Sender
from dispatcher.worker.statuses import poll_statuses_forever

RESPONSE_BODY_MAX = 64 * 1024
SCHEMA_RECHECK_SECONDS = 5.0
SCHEDULER_CHECK_SECONDS = 30.0  # how often a dispatcher asks whether pg_cron still runs pgalert's jobs
CHANNEL_RELOAD_SECONDS = 30.0  # channels added or changed in SQL are picked up this soon, or at their first delivery
GAUGE_SECONDS = 5.0
HANDOFF_SECONDS = 0.0005  # see _claim_forever: INSERT-to-provider p50 -0.04 to -0.14 ms, alternating runs
# the schema this dispatcher was built with: the newest migration shipped beside it
EXPECTED_SCHEMA = discover_migrations()[-1].version


class Dispatcher:
    def __init__(self, settings: Settings, providers: Mapping[str, Provider], metrics: Metrics | None = None,
                 env: Mapping[str, str] | None = None, connector: Connector | None = None,
                 client: Client | None = None):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.channels = ChannelBook(providers, os.environ if env is None else env)
        self.claim_paces = self._paces_for_the_claim()
        self._channels_loaded = -float("inf")
        self.secrets = all_secrets(providers) + tuple(s for s in (settings.production_url, settings.heartbeat_url) if s)
        self.connector = connector or PsycopgConnector(settings.database_url, settings.dispatcher_id,
                                                       settings.connect_timeout)
        self.stopping = threading.Event()
        self.wake = threading.Event()
        # set when a thread this process cannot work without has died: it then stops and exits non-zero
        self.failed: str | None = None
        # set when results can no longer be recorded: a message sent now would be sent again by another
        # dispatcher once its lease ends, so nothing more goes out
        self.unrecordable = threading.Event()
        self.inflight = InFlight(settings.concurrency)
        self.recorder = Recorder(self.connector, self.inflight, self.stopping, self.wake.set, self._clean)
        self._client = client or HttpClient(settings.concurrency, settings.connect_timeout, settings.http_timeout,
                                            RESPONSE_BODY_MAX)
        self.sender = Sender(settings, self._client, lambda: self.channels.providers, self.inflight,
                             self.recorder.add, self.metrics, self._clean, self.unrecordable)
        self._newer_schema_noted = False

    @property
    def providers(self) -> Mapping[str, Provider]:
        return self.channels.providers

    # ---- lifecycle ------------------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            logs.info("stopping", signal=signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def run(self) -> int:
        logs.info("dispatcher starting", dispatcher=self.settings.dispatcher_id,
                  providers=",".join(n for n, p in self.providers.items() if not isinstance(p, Unconfigured)) or "none",
                  concurrency=self.settings.concurrency)
        for name, provider in self.providers.items():
            if isinstance(provider, Unconfigured):
                logs.warning("provider not configured; its deliveries will be skipped",
                             provider=name, reason=provider.reason)
        self._essential("listener", self._listen_forever).start()
        self._essential("recorder", self.recorder.run).start()
        self._essential("statuses", poll_statuses_forever, self.connector, self._client, lambda: self.providers,
                        self.settings.connect_timeout + self.settings.http_timeout + 1, self.stopping,
                        self._clean).start()
        if self.settings.health_checks:
            self._essential("probes", probe_forever, self.connector, self.settings.production_url, self.stopping,
                            self._clean).start()
        self._essential("scheduler", schedule_forever, self.connector, self.settings.scheduler, self.metrics,
                        self.stopping, self._clean).start()
        if self.settings.heartbeat_url:
            self._essential("heartbeat", heartbeat_forever, self.settings.heartbeat_url,
                            self.settings.heartbeat_seconds, self._stale_after(), self.metrics, self.stopping,
                            self._clean).start()
        started_stopping = self._claim_forever()
        self._shutdown(started_stopping)
        if self.failed:
            logs.error("dispatcher stopped after a failure; exiting non-zero for the supervisor to restart it",
                       dispatcher=self.settings.dispatcher_id, problem=self.failed)
            return 1
        logs.info("dispatcher stopped", dispatcher=self.settings.dispatcher_id)
        return 0

    def _essential(self, name: str, target: Callable[..., None], *args: object) -> threading.Thread:
        """A thread the dispatcher cannot work without. Carrying on without it is worse than stopping: without
        the recorder, every message sent goes unrecorded and is sent again by another dispatcher after its
        lease; without the others, the process looks alive and is not. So its death stops the dispatcher,
        which exits non-zero and is restarted by its supervisor."""

        def run() -> None:
            try:
                target(*args)
            except BaseException as error:  # noqa: BLE001 - whatever killed it, the process must not go on
                self._died(name, f"{type(error).__name__}: {error}")
                return
            if not self.stopping.is_set():
                self._died(name, "it returned")

        return threading.Thread(target=run, name=name, daemon=True)

    def _died(self, name: str, why: str) -> None:
        self.failed = f"the {name} thread died ({self._clean(why)})"
        if name == "recorder":
            self.unrecordable.set()
        logs.error("a dispatcher thread died; stopping", thread=name, error=self._clean(why))
        self.metrics.problem = self.failed
        self.stop()

    def _shutdown(self, deadline_start: float) -> None:
        deadline = deadline_start + self.settings.shutdown_seconds
        while time.monotonic() < deadline and not self.inflight.idle():
            time.sleep(0.02)
        unsent = self.inflight.unsent()
        if self.unrecordable.is_set():
            self.recorder.salvage()
        else:
            self.recorder.done.wait(max(deadline - time.monotonic(), 0.5))
        if unsent:
            try:
                with self.connector.session("release") as session:
                    released = session.queries.release(unsent)
                logs.warning("released unfinished deliveries", count=released)
            except psycopg.Error as error:
                logs.error("could not release deliveries; their lease will expire", error=self._clean(str(error)))
        self._client.close()

    # ---- listener -------------------------------------------------------------------------------------------

    def _listen_forever(self) -> None:
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                with self.connector.session("listen") as session:
                    session.listen()
                    self.metrics.listener_connected.set(1)
                    if backoff.current:
                        logs.info("listener reconnected")
                    backoff.reset()
                    self.wake.set()  # sweep: anything inserted while we were away is due now
                    last_ping = time.monotonic()
                    while not self.stopping.is_set():
                        for _ in session.notifications(min(self.settings.poll_seconds, 1.0)):
                            self.wake.set()
                        if time.monotonic() - last_ping >= self.settings.poll_seconds:
                            session.ping()  # a silently dead connection would otherwise wait forever
                            last_ping = time.monotonic()
            except psycopg.Error as error:
                self.metrics.listener_connected.set(0)
                delay = backoff.next()
                logs.warning("listener disconnected", error=self._clean(str(error)), retry_in=round(delay, 2))
                self.stopping.wait(delay)
        self.metrics.listener_connected.set(0)

    # ---- claimer --------------------------------------------------------------------------------------------

    def _claim_forever(self) -> float:
        backoff = Backoff()
        last_gauges = last_scheduler_check = -float("inf")
        while not self.stopping.is_set():
            try:
                with self.connector.session("claim", durable=False) as session:
                    queries = session.queries
                    problem = self._schema_problem(queries)
                    if problem:
                        self._report(problem)
                        self.metrics.last_loop = time.monotonic()
                        # look again soon: a migration is the usual cure, and it does not NOTIFY us
                        self.stopping.wait(min(backoff.next(), SCHEMA_RECHECK_SECONDS))
                        continue
                    while not self.stopping.is_set():
                        self.metrics.last_loop = time.monotonic()
                        if time.monotonic() - last_gauges > GAUGE_SECONDS:
                            self.metrics.set_queue(queries.queue())
                            last_gauges = time.monotonic()
                        if time.monotonic() - last_scheduler_check > self._scheduler_every():
                            self._check_scheduler(session)
                            last_scheduler_check = time.monotonic()
                        self.wake.clear()
                        capacity = self.inflight.capacity()
                        claimed = self.claim(queries, capacity) if capacity else 0
                        self._report(None)
                        backoff.reset()  # only once work succeeds: a connection alone proves nothing
                        if claimed and claimed == min(capacity, self.settings.batch_size):
                            continue  # more may be due right now
                        if claimed:
                            # The HTTP thread needs the interpreter lock to send what was just handed to it: wait
                            # a moment before asking when the next delivery is due, or that query's Python holds
                            # the lock first. A wake-up (NOTIFY, finished sends) ends the wait at once.
                            self.wake.wait(HANDOFF_SECONDS)
                        self.wake.wait(self._idle_wait(queries, capacity))
            except psycopg.Error as error:
                delay = backoff.next()
                self._report(f"database unavailable: {self._clean(str(error).strip())}")
                self.stopping.wait(delay)
        return time.monotonic()

    def _stale_after(self) -> float:
        """How long the claim loop may go without turning before the heartbeat stops: it turns at least every
        poll interval, so three of them, and never less than one beat."""
        return max(self.settings.poll_seconds * 3, self.settings.heartbeat_seconds)

    def _scheduler_every(self) -> float:
        """pg_cron is asked as often as the heartbeat beats, so a stalled scheduler stops it within two beats."""
        if self.settings.heartbeat_url:
            return min(SCHEDULER_CHECK_SECONDS, self.settings.heartbeat_seconds)
        return SCHEDULER_CHECK_SECONDS

    def _schema_problem(self, queries: db.DispatcherQueries) -> str | None:
        """Why this database cannot be worked on by this dispatcher, or None."""
        version = queries.schema_version()
        if version is None:
            return "database is not migrated: run `pgalert migrate` (or psql -f sql/install.psql)"
        if version < EXPECTED_SCHEMA:
            return (f"database schema is at migration {version}, this dispatcher needs {EXPECTED_SCHEMA}: "
                    "run `pgalert migrate`")
        if version > EXPECTED_SCHEMA and not self._newer_schema_noted:
            self._newer_schema_noted = True  # a rolling upgrade: migrate first, then restart dispatchers
            logs.warning("database schema is newer than this dispatcher; upgrade the dispatcher soon",
                         schema=version, dispatcher_schema=EXPECTED_SCHEMA)
        return None

    def _check_scheduler(self, session: Session) -> None:
        """pg_cron runs rules, escalations and hold releases; when it stops, nothing in it can say so. Every
        dispatcher asks (the alert is raised once, resolved when the jobs run again) and shows it on /healthz.
        The check watches the delivery, it never stops it: an error in it is logged and the claim loop goes on
        (unless the connection itself broke, which the loop handles)."""
        try:
            seconds, running = session.queries.check_scheduler()
        except psycopg.Error as error:
            if session.broken:
                raise
            logs.error("checking the scheduled jobs failed", error=self._clean(str(error).strip())[:300])
            return
        self.metrics.scheduler_age.set(seconds)
        if not running and self.metrics.scheduler_running is not False:
            logs.error("scheduled jobs are not running", seconds_since_run=round(seconds))
        elif running and self.metrics.scheduler_running is False:
            logs.info("scheduled jobs run again")
        self.metrics.scheduler_running = running

    def _report(self, problem: str | None) -> None:
        """Say what keeps the dispatcher from working once, when it starts or changes, not at every retry;
        /healthz answers 503 with it meanwhile."""
        problem = self.failed or problem  # a dead thread is the problem until the process ends
        if problem == self.metrics.problem:
            return
        if problem:
            logs.error("dispatcher cannot work", problem=problem)
        else:
            logs.info("dispatcher working", previous_problem=self.metrics.problem)
        self.metrics.problem = problem

    def _idle_wait(self, queries: db.DispatcherQueries, capacity: int) -> float:
        if not capacity:
            return self.settings.poll_seconds  # the recorder wakes us when sends finish
        due_in = queries.seconds_until_next_due()
        if due_in is None:
            return self.settings.poll_seconds
        return min(max(due_in, 0.005), self.settings.poll_seconds)

    def load_channels(self, queries: db.DispatcherQueries, force: bool = False) -> None:
        """The channels of monitoring_providers: at connect, every CHANNEL_RELOAD_SECONDS, and when a delivery
        names a channel this dispatcher does not know yet."""
        if not force and time.monotonic() - self._channels_loaded < CHANNEL_RELOAD_SECONDS:
            return
        self._channels_loaded = time.monotonic()
        new_secrets = self.channels.load(queries.channels())
        if new_secrets is None:
            return
        self.secrets = tuple(dict.fromkeys(self.secrets + new_secrets))
        logs.add_secrets(new_secrets)
        self.claim_paces = self._paces_for_the_claim()

    def claim(self, queries: db.DispatcherQueries, capacity: int) -> int:
        """Claim up to `capacity` due deliveries and hand each to the sender, as its channel's pace allows."""
        self.load_channels(queries)
        rows = queries.claim(min(capacity, self.settings.batch_size), self.settings.lease_seconds, self.claim_paces)
        deliveries = [to_delivery(row) for row in rows]
        if any(not self.channels.knows(d.provider) for d in deliveries):
            self.load_channels(queries, force=True)
        self.inflight.claimed(d.delivery_id for d in deliveries)
        by_provider: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            by_provider[delivery.provider].append(delivery)
        for provider, batch in by_provider.items():
            plan = pacing.plan(provider, batch, self._pace_of(provider), self.providers.get(provider),
                               provider in self.claim_paces, queries.reserve_slots)
            for delivery, seconds in plan.deferred:
                self.sender.defer(delivery, seconds)
            for group in plan.requests:
                self.sender.send(group)
        return len(deliveries)

    def _pace_of(self, channel: str) -> pacing.Pace | None:
        return pacing.pace_of(self.settings.pacing, self.channels.kinds, channel)

    def _paces_for_the_claim(self) -> dict[str, dict[str, float]]:
        return pacing.paces_for_the_claim(self.settings.pacing, self.channels.providers, self.channels.kinds)

    def _clean(self, text: str | None) -> str | None:
        return redact(text, self.secrets)
