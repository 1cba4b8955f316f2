"""The dispatcher loop: wake on NOTIFY or a timer, claim with SKIP LOCKED, send, record.

Three threads talk to PostgreSQL, each on its own connection:
- the listener LISTENs and sets `wake`; NOTIFY is only a hint, so a missed one costs at most a poll interval;
- the claimer (the main thread) claims due deliveries, applies pacing, and hands them to the HTTP loop;
- the recorder writes results back in batches, never dropping one while the database is away.
Requests are built, sent and their replies judged on the HTTP loop's thread (dispatcher.http), outside any
transaction.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import os
import random
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
import requests

from dispatcher import db, logs, probes
from dispatcher.http import HttpClient, SendFailed, SendTimeout
from dispatcher.metrics import Metrics
from dispatcher.migrate import discover_migrations
from dispatcher.providers import Channel, all_secrets, channel_provider
from dispatcher.providers.base import (
    Delivery,
    HttpResponse,
    Provider,
    Request,
    Unconfigured,
    Verdict,
    minimal_alert,
)
from dispatcher.redact import redact
from dispatcher.settings import Pace, Settings

RESPONSE_BODY_MAX = 64 * 1024
SCHEMA_RECHECK_SECONDS = 5.0
SCHEDULER_CHECK_SECONDS = 30.0  # how often a dispatcher asks whether pg_cron still runs pgalert's jobs
CHANNEL_RELOAD_SECONDS = 30.0  # channels added or changed in SQL are picked up this soon, or at their first delivery
# the schema this dispatcher was built with: the newest migration shipped beside it
EXPECTED_SCHEMA = discover_migrations()[-1].version
RECORD_BATCH_MAX = 500
RECORD_GATHER_SECONDS = 0.005


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Backoff:
    """Reconnect delays: jittered, doubling from 0.1 s to 30 s."""

    first: float = 0.1
    cap: float = 30.0
    current: float = 0.0

    def next(self) -> float:
        self.current = min(self.cap, self.current * 2 if self.current else self.first)
        return random.uniform(self.current / 2, self.current)

    def reset(self) -> None:
        self.current = 0.0


def to_delivery(row: tuple) -> Delivery:
    delivery_id, attempt, provider, action, target, context, provider_key, alert = row
    return Delivery(delivery_id, attempt, provider, action, target, context or {}, provider_key, alert)


def result_row(delivery: Delivery, verdict: Verdict, started: dt.datetime, finished: dt.datetime,
               http_status: int | None, retry_at: dt.datetime | None) -> dict:
    return {
        "delivery_id": delivery.delivery_id,
        "attempt": delivery.attempt,
        "outcome": verdict.outcome,
        "http_status": http_status,
        "error": verdict.error,
        "provider_reference": verdict.reference,
        "retry_at": retry_at.isoformat() if retry_at else None,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "pause": verdict.pause_provider,
    }


def decide(
    delivery: Delivery, verdict: Verdict, settings: Settings, now: dt.datetime
) -> tuple[Verdict, dt.datetime | None]:
    """Turn a retryable verdict into a time to retry, or into a failure once attempts are exhausted."""
    if verdict.outcome != "retry":
        return verdict, None
    if settings.retry.exhausted(delivery.attempt):
        return Verdict("failed", f"gave up after {delivery.attempt} attempts; last: {verdict.error}"), None
    delay = settings.retry.delay(delivery.attempt, verdict.retry_after)
    return verdict, now + dt.timedelta(seconds=delay)


def build_request(provider: Provider, deliveries: list[Delivery],
                  clean: Callable[[str], str] = str) -> Request | Verdict:
    """The request for one delivery, or a digest of several. A stored alert always pages: when its full payload
    will not build (a bug, or a row no builder foresaw), the minimal one (title, severity, id) goes instead,
    logged; retrying the same payload would only fail the same way until the attempts ran out."""
    first = deliveries[0]

    def attempt(batch: list[Delivery]) -> Request | None:
        return provider.build(batch[0]) if len(batch) == 1 else provider.build_digest(batch)

    try:
        request = attempt(deliveries)
    except Exception as error:  # noqa: BLE001 - a bug in one payload must not stop the HTTP loop
        logs.error("building a request failed; sending the minimal one", delivery_id=first.delivery_id,
                   provider=first.provider, error=clean(repr(error)))
        try:
            request = attempt([dataclasses.replace(d, alert=minimal_alert(d.alert)) for d in deliveries])
        except Exception as second:  # noqa: BLE001
            logs.error("building the minimal request failed too", delivery_id=first.delivery_id,
                       provider=first.provider, error=clean(repr(second)))
            return Verdict("failed", clean(f"internal error building the request: {type(second).__name__}: {second}"))
    if request is None:
        return Verdict("skipped", f"{first.provider} has nothing to send for {first.action}")
    return request


class Dispatcher:
    def __init__(self, settings: Settings, providers: Mapping[str, Provider], metrics: Metrics | None = None,
                 connect: Callable[[str], psycopg.Connection] | None = None, env: Mapping[str, str] | None = None):
        self.settings = settings
        self._default_providers = dict(providers)
        self.providers = dict(providers)  # replaced whole when channels load, so readers never see it half-built
        self.kinds: dict[str, str] = {name: name for name in providers}
        self.claim_paces = self._paces_for_the_claim()
        self._env = os.environ if env is None else env
        self._channels: tuple = ()
        self._channels_loaded = -float("inf")
        self.metrics = metrics or Metrics()
        self.secrets = all_secrets(self.providers) + ((settings.production_url,) if settings.production_url else ())
        self._connect = connect or (lambda name: db.connect(
            settings.database_url, connect_timeout=settings.connect_timeout,
            application_name=f"pgalert {name} {settings.dispatcher_id}"[:63]))
        self.stopping = threading.Event()
        self.wake = threading.Event()
        # results for the recorder: appended from any thread (deque appends are atomic), taken only by the
        # recorder, which `results_ready` wakes once per batch rather than once per result
        self.results: collections.deque[dict] = collections.deque()
        self.results_ready = threading.Event()
        self._lock = threading.Lock()
        self._outstanding: set[int] = set()  # claimed, result not yet recorded
        self._sending: set[int] = set()  # handed to the HTTP loop, reply not yet judged
        self._client = HttpClient(settings.concurrency, settings.connect_timeout, settings.http_timeout,
                                  RESPONSE_BODY_MAX)
        self._recorder_done = threading.Event()
        self._newer_schema_noted = False

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
        listener = threading.Thread(target=self._listen_forever, name="listener", daemon=True)
        recorder = threading.Thread(target=self._record_forever, name="recorder", daemon=True)
        listener.start()
        recorder.start()
        if self.settings.health_checks:
            threading.Thread(target=self._probe_forever, name="probes", daemon=True).start()
        started_stopping = self._claim_forever()
        self._shutdown(started_stopping)
        logs.info("dispatcher stopped", dispatcher=self.settings.dispatcher_id)
        return 0

    def _shutdown(self, deadline_start: float) -> None:
        deadline = deadline_start + self.settings.shutdown_seconds
        while time.monotonic() < deadline:
            with self._lock:
                if not self._sending:
                    break
            time.sleep(0.02)
        with self._lock:
            unsent = sorted(self._sending)
        self._recorder_done.wait(max(deadline - time.monotonic(), 0.5))
        if unsent:
            try:
                with self._connect("release") as conn:
                    released = db.DispatcherQueries(conn, self.settings.dispatcher_id).release(unsent)
                logs.warning("released unfinished deliveries", count=released)
            except psycopg.Error as error:
                logs.error("could not release deliveries; their lease will expire", error=self._clean(str(error)))
        self._client.close()

    # ---- listener -------------------------------------------------------------------------------------------

    def _listen_forever(self) -> None:
        backoff = Backoff()
        while not self.stopping.is_set():
            try:
                with self._connect("listen") as conn:
                    db.listen(conn)
                    self.metrics.listener_connected.set(1)
                    if backoff.current:
                        logs.info("listener reconnected")
                    backoff.reset()
                    self.wake.set()  # sweep: anything inserted while we were away is due now
                    last_ping = time.monotonic()
                    while not self.stopping.is_set():
                        for _ in db.notifications(conn, timeout=min(self.settings.poll_seconds, 1.0)):
                            self.wake.set()
                        if time.monotonic() - last_ping >= self.settings.poll_seconds:
                            db.ping(conn)  # a silently dead connection would otherwise wait forever
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
        last_gauges = last_scheduler_check = 0.0
        while not self.stopping.is_set():
            try:
                with self._connect("claim") as conn:
                    # A claim need not survive a PostgreSQL crash: a lost claim, like a lost result, ends in one
                    # more send (provider dedup keys absorb it). Not waiting for the WAL flush took 0.13 ms off
                    # the latency p50 (1.00 against 1.13 ms, alternating runs). Results stay synchronous.
                    conn.execute("SET synchronous_commit = off")
                    queries = db.DispatcherQueries(conn, self.settings.dispatcher_id)
                    problem = self._schema_problem(queries)
                    if problem:
                        self._report(problem)
                        self.metrics.last_loop = time.monotonic()
                        # look again soon: a migration is the usual cure, and it does not NOTIFY us
                        self.stopping.wait(min(backoff.next(), SCHEMA_RECHECK_SECONDS))
                        continue
                    while not self.stopping.is_set():
                        self.metrics.last_loop = time.monotonic()
                        if time.monotonic() - last_gauges > 5:
                            self.metrics.set_queue(queries.queue())
                            last_gauges = time.monotonic()
                        if time.monotonic() - last_scheduler_check > SCHEDULER_CHECK_SECONDS:
                            self._check_scheduler(queries)
                            last_scheduler_check = time.monotonic()
                        self.wake.clear()
                        capacity = self._capacity()
                        claimed = self._claim(queries, capacity) if capacity else 0
                        self._report(None)
                        backoff.reset()  # only once work succeeds: a connection alone proves nothing
                        if claimed and claimed == min(capacity, self.settings.batch_size):
                            continue  # more may be due right now
                        self.wake.wait(self._idle_wait(queries, capacity))
            except psycopg.Error as error:
                delay = backoff.next()
                self._report(f"database unavailable: {self._clean(str(error).strip())}")
                self.stopping.wait(delay)
        return time.monotonic()

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

    def _check_scheduler(self, queries: db.DispatcherQueries) -> None:
        """pg_cron runs rules, escalations and hold releases; when it stops, nothing in it can say so. Every
        dispatcher asks (the alert is raised once, resolved when the jobs run again) and shows it on /healthz.
        The check watches the delivery, it never stops it: an error in it is logged and the claim loop goes on
        (unless the connection itself broke, which the loop handles)."""
        try:
            seconds, running = queries.check_scheduler()
        except psycopg.Error as error:
            if queries.conn.broken:
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
        if problem == self.metrics.problem:
            return
        if problem:
            logs.error("dispatcher cannot work", problem=problem)
        else:
            logs.info("dispatcher working", previous_problem=self.metrics.problem)
        self.metrics.problem = problem

    def _capacity(self) -> int:
        """How many deliveries to claim now. Under load, wait until half the window is free: each claim has a
        fixed cost (measured: 1.45 ms a call at ~8 deliveries a call), so a few large claims cost less than
        many small ones. With nothing in flight, claim at once, which is what keeps latency low."""
        window = self.settings.concurrency * 2
        with self._lock:
            free = max(window - len(self._outstanding), 0)
            return free if free * 2 >= window or not self._outstanding else 0

    def _idle_wait(self, queries: db.DispatcherQueries, capacity: int) -> float:
        if not capacity:
            return self.settings.poll_seconds  # the recorder wakes us when sends finish
        due_in = queries.seconds_until_next_due()
        if due_in is None:
            return self.settings.poll_seconds
        return min(max(due_in, 0.005), self.settings.poll_seconds)

    def _load_channels(self, queries: db.DispatcherQueries, force: bool = False) -> None:
        """The channels of monitoring_providers, as providers with their secrets from the environment: at connect,
        every CHANNEL_RELOAD_SECONDS, and when a delivery names a channel this dispatcher does not know yet."""
        if not force and time.monotonic() - self._channels_loaded < CHANNEL_RELOAD_SECONDS:
            return
        self._channels_loaded = time.monotonic()
        rows = tuple(queries.channels())
        if rows == self._channels:
            return
        self._channels = rows
        channels = [Channel(name, kind, settings or {}, refs or {}) for name, kind, settings, refs in rows]
        providers = dict(self._default_providers)
        for channel in channels:
            providers[channel.name] = channel_provider(channel, self._env)
        new_secrets = all_secrets(providers)
        self.secrets = tuple(dict.fromkeys(self.secrets + new_secrets))
        logs.add_secrets(new_secrets)
        self.kinds = {**{name: name for name in self._default_providers}, **{c.name: c.kind for c in channels}}
        self.providers = providers
        self.claim_paces = self._paces_for_the_claim()
        for channel in channels:
            provider = providers[channel.name]
            if isinstance(provider, Unconfigured):
                logs.warning("channel not configured; its deliveries will be skipped", channel=channel.name,
                             reason=provider.reason)
        logs.info("channels loaded", channels=",".join(c.name for c in channels) or "none")

    def _claim(self, queries: db.DispatcherQueries, capacity: int) -> int:
        self._load_channels(queries)
        rows = queries.claim(min(capacity, self.settings.batch_size), self.settings.lease_seconds, self.claim_paces)
        deliveries = [to_delivery(row) for row in rows]
        if any(d.provider not in self.providers for d in deliveries):
            self._load_channels(queries, force=True)
        with self._lock:
            self._outstanding.update(d.delivery_id for d in deliveries)
        by_provider: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in deliveries:
            by_provider[delivery.provider].append(delivery)
        for provider, batch in by_provider.items():
            for group in self._pace(queries, provider, batch):
                with self._lock:
                    self._sending.update(d.delivery_id for d in group)
                self._send(group)
        return len(deliveries)

    def _pace_of(self, channel: str) -> Pace | None:
        """A channel is paced as its kind unless --pacing names it; each channel keeps its own pace and pauses."""
        return self.settings.pacing.get(channel) or self.settings.pacing.get(self.kinds.get(channel, channel))

    def _paces_for_the_claim(self) -> dict[str, dict[str, float]]:
        """The paced channels whose slots the claim reserves, so their sends cost one round trip: all but those
        that fold what exceeds their pace into a digest (Slack), which _pace does after the claim."""
        paces = {}
        for channel, sender in self.providers.items():
            pace = self._pace_of(channel)
            if pace and not isinstance(sender, Unconfigured) and sender.digest_max <= 1:
                paces[channel] = {"interval": pace.interval, "burst": pace.burst}
        return paces

    def _pace(self, queries: db.DispatcherQueries, provider: str, batch: list[Delivery]) -> list[list[Delivery]]:
        """What to send now, one list per request; what the pace does not allow now is deferred, never dropped.

        A provider that can send a digest (Slack) folds what exceeds its pace into the last granted message,
        and defers the rest together to its next slot, where they make the next digest."""
        pace = self._pace_of(provider)
        sender = self.providers.get(provider)
        if not pace or isinstance(sender, Unconfigured | None) or provider in self.claim_paces:
            return [[delivery] for delivery in batch]
        granted, wait = queries.reserve_slots(provider, len(batch), pace.interval, pace.burst)
        digest_max = sender.digest_max
        if granted >= len(batch) or digest_max <= 1:
            for position, delivery in enumerate(batch[granted:]):
                self._defer(delivery, wait + position * pace.interval)
            return [[delivery] for delivery in batch[:granted]]
        if not granted:
            for delivery in batch:
                self._defer(delivery, wait)
            return []
        singles, rest = batch[:granted - 1], batch[granted - 1:]
        for delivery in rest[digest_max:]:
            self._defer(delivery, wait)
        return [*([delivery] for delivery in singles), rest[:digest_max]]

    def _defer(self, delivery: Delivery, seconds: float) -> None:
        now = utcnow()
        verdict = Verdict("deferred")
        self._result(result_row(delivery, verdict, now, now, None, now + dt.timedelta(seconds=seconds)))

    # ---- senders --------------------------------------------------------------------------------------------

    def _send(self, deliveries: list[Delivery]) -> None:
        """One request for one delivery, or a digest for several, handed to the HTTP loop, which builds it on its
        own thread (so the claimer does not hold the interpreter lock the first send needs); a result for each
        comes back through _on_reply. What needs no request is finished without one."""
        started = utcnow()
        provider = self.providers.get(deliveries[0].provider)

        def build() -> Request | None:
            request = self._request_for(deliveries, provider)
            if isinstance(request, Verdict):
                self._finish(deliveries, started, request, None)
                return None
            return request

        self._client.submit(build, lambda reply, seconds: self._on_reply(deliveries, provider, started, reply,
                                                                         seconds))

    def _request_for(self, deliveries: list[Delivery], provider: Provider | None) -> Request | Verdict:
        """The request to send, or why there is none: skipped, or a payload that will not build."""
        first = deliveries[0]
        if provider is None:
            return Verdict("skipped", f"this dispatcher has no provider named {first.provider}")
        if isinstance(provider, Unconfigured):
            return Verdict("skipped", provider.reason)
        return build_request(provider, deliveries, self._clean)

    def _on_reply(self, deliveries: list[Delivery], provider: Provider, started: dt.datetime,
                  reply: HttpResponse | SendTimeout | SendFailed, seconds: float) -> None:
        first = deliveries[0]
        self.metrics.send_seconds.labels(first.provider).observe(seconds)
        http_status = None
        if isinstance(reply, SendTimeout):
            verdict = Verdict("retry", f"timed out after {self.settings.http_timeout:g}s")
        elif isinstance(reply, SendFailed):
            verdict = Verdict("retry", str(reply))
        else:
            http_status = reply.status
            try:
                verdict = provider.judge(first, reply)
            except Exception as error:  # noqa: BLE001 - an odd reply must not lose the result
                logs.error("judging a reply failed", delivery_id=first.delivery_id, error=self._clean(repr(error)))
                verdict = Verdict("retry", f"internal error: {type(error).__name__}: {error}")
        self._finish(deliveries, started, verdict, http_status)

    def _finish(self, deliveries: list[Delivery], started: dt.datetime, verdict: Verdict,
                http_status: int | None) -> None:
        finished = utcnow()
        digest = {"digest_of": len(deliveries), "digest_id": deliveries[0].delivery_id} if len(deliveries) > 1 else {}
        for delivery in deliveries:
            outcome, retry_at = decide(delivery, verdict, self.settings, finished)
            outcome = Verdict(outcome.outcome, self._clean(outcome.error), outcome.reference, outcome.retry_after,
                              outcome.pause_provider)
            self.metrics.deliveries.labels(delivery.provider, delivery.action, outcome.outcome).inc()
            logs.info("delivery", delivery_id=delivery.delivery_id, alert_id=delivery.alert.get("id"),
                      provider=delivery.provider, action=delivery.action, attempt=delivery.attempt,
                      outcome=outcome.outcome, http_status=http_status,
                      ms=round((finished - started).total_seconds() * 1000, 1), **digest,
                      **({"error": outcome.error} if outcome.error else {}))
            self._result(result_row(delivery, outcome, started, finished, http_status, retry_at))
        with self._lock:
            self._sending.difference_update(d.delivery_id for d in deliveries)

    # ---- health probes --------------------------------------------------------------------------------------

    def _probe_forever(self) -> None:
        """Claim due health checks (one dispatcher per check) and record each result as events."""
        backoff = Backoff()
        last_error: str | None = None
        session = probes.session()
        with ThreadPoolExecutor(4, thread_name_prefix="probe") as pool:
            while not self.stopping.is_set():
                try:
                    with self._connect("probes") as conn:
                        queries = db.DispatcherQueries(conn, self.settings.dispatcher_id)
                        if self.settings.production_url:
                            queries.ensure_health_check("production", "env:PRODUCTION_URL", 300)
                        while not self.stopping.is_set():
                            checks = [probes.Check(*row) for row in queries.claim_health_checks(8)]
                            for check, outcome in zip(checks, pool.map(self._probe, [session] * len(checks), checks),
                                                      strict=True):
                                queries.record_health_check(check.check_id, outcome.status, outcome.response_ms,
                                                            outcome.error)
                            backoff.reset()
                            last_error = None
                            self.stopping.wait(1.0)
                except psycopg.Error as error:
                    delay = backoff.next()
                    message = self._clean(str(error).strip())
                    if message != last_error:  # once, not at every retry
                        logs.warning("health probes paused", error=message)
                        last_error = message
                    self.stopping.wait(delay)

    def _probe(self, session: requests.Session, check: probes.Check) -> probes.Outcome:
        outcome = probes.run_check(session, check, os.environ)
        logs.info("health check", check=check.name, status=outcome.status, ms=outcome.response_ms,
                  **({"error": outcome.error} if outcome.error else {}))
        return outcome

    # ---- recorder -------------------------------------------------------------------------------------------

    def _result(self, row: dict) -> None:
        self.results.append(row)
        if not self.results_ready.is_set():
            self.results_ready.set()

    def _record_forever(self) -> None:
        backoff = Backoff()
        pending: list[dict] = []
        conn = None
        while True:
            if not pending:
                # cleared before looking, so a result appended after the look sets it again and ends the wait
                self.results_ready.clear()
                if not self.results:
                    # idle first: a send appends its result before it stops counting as in flight
                    if self.stopping.is_set() and self._idle() and not self.results:
                        break
                    self.results_ready.wait(0.2)
                    continue
                # gather for a moment: each recording call has a fixed cost, and a few ms here delay no send.
                # Sleeping, not waking per result: a queue.Queue woke this thread for every result, and at full
                # load 7% of the interpreter lock's samples (py-spy) were that wake-up.
                time.sleep(RECORD_GATHER_SECONDS)
                while self.results and len(pending) < RECORD_BATCH_MAX:
                    pending.append(self.results.popleft())
            try:
                if conn is None or conn.closed:
                    conn = self._connect("record")
                self._complete(conn, pending)
                backoff.reset()
            except psycopg.OperationalError as error:
                if conn is not None:
                    conn.close()
                conn = None
                delay = backoff.next()
                logs.warning("could not record results; keeping them", count=len(pending),
                             error=self._clean(str(error)), retry_in=round(delay, 2))
                if self.stopping.is_set() and backoff.current >= 4:
                    logs.error("giving up recording at shutdown; leases will expire", count=len(pending))
                    break
                time.sleep(delay)
                continue
            with self._lock:
                self._outstanding.difference_update(r["delivery_id"] for r in pending)
            pending = []
            self.wake.set()
        if conn is not None:
            conn.close()
        self._recorder_done.set()

    def _complete(self, conn: psycopg.Connection, results: list[dict]) -> None:
        """Record a batch; a result the database refuses is recorded alone, stripped to what must be kept."""
        queries = db.DispatcherQueries(conn, self.settings.dispatcher_id)
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

    def _idle(self) -> bool:
        with self._lock:
            return not self._sending

    def _clean(self, text: str | None) -> str | None:
        return redact(text, self.secrets)
