"""The adapter between claimed deliveries and the HTTP loop (dispatcher.http): a request is built and sent on
the loop's thread, its reply judged there by the provider, and a result handed to the recorder for each
delivery it carried."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping
from typing import Protocol

from dispatcher import logs
from dispatcher.http import Build, Done, SendFailed, SendTimeout
from dispatcher.metrics import Metrics
from dispatcher.providers.base import Delivery, HttpResponse, Provider, Request, Unconfigured, Verdict
from dispatcher.settings import Settings
from dispatcher.worker.inflight import InFlight
from dispatcher.worker.outcomes import build_request, decide, result_row, utcnow


class Client(Protocol):
    """What the sender needs of dispatcher.http.HttpClient."""

    def submit(self, request: Request | Build, done: Done) -> None: ...

    def close(self) -> None: ...


class Sender:
    def __init__(self, settings: Settings, client: Client, providers: Callable[[], Mapping[str, Provider]],
                 inflight: InFlight, record: Callable[[dict], None], metrics: Metrics,
                 clean: Callable[[str | None], str | None], unrecordable: threading.Event):
        self._settings = settings
        self._client = client
        self._providers = providers  # the current channel book's, read at each send
        self._inflight = inflight
        self._record = record
        self._metrics = metrics
        self._clean = clean
        self._unrecordable = unrecordable

    def send(self, deliveries: list[Delivery]) -> None:
        """One request for one delivery, or a digest for several, handed to the HTTP loop, which builds it on its
        own thread (so the claimer does not hold the interpreter lock the first send needs); a result for each
        comes back through on_reply. What needs no request is finished without one."""
        self._inflight.sending(d.delivery_id for d in deliveries)
        started = utcnow()
        provider = self._providers().get(deliveries[0].provider)

        def build() -> Request | None:
            if self._unrecordable.is_set():  # its result could not be recorded: leave it to be released
                self._inflight.withheld(d.delivery_id for d in deliveries)
                return None
            request = self.request_for(deliveries, provider)
            if isinstance(request, Verdict):
                self.finish(deliveries, started, request, None)
                return None
            return request

        self._client.submit(build, lambda reply, seconds: self.on_reply(deliveries, provider, started, reply, seconds))

    def defer(self, delivery: Delivery, seconds: float) -> None:
        now = utcnow()
        self._record(result_row(delivery, Verdict("deferred"), now, now, None, now + dt.timedelta(seconds=seconds)))

    def request_for(self, deliveries: list[Delivery], provider: Provider | None) -> Request | Verdict:
        """The request to send, or why there is none: skipped, or a payload that will not build."""
        first = deliveries[0]
        if provider is None:
            return Verdict("skipped", f"this dispatcher has no provider named {first.provider}")
        if isinstance(provider, Unconfigured):
            return Verdict("skipped", provider.reason)
        return build_request(provider, deliveries, self._clean)

    def on_reply(self, deliveries: list[Delivery], provider: Provider, started: dt.datetime,
                 reply: HttpResponse | SendTimeout | SendFailed, seconds: float) -> None:
        first = deliveries[0]
        self._metrics.send_seconds.labels(first.provider).observe(seconds)
        http_status = None
        if isinstance(reply, SendTimeout):
            verdict = Verdict("retry", f"timed out after {self._settings.http_timeout:g}s")
        elif isinstance(reply, SendFailed):
            verdict = Verdict("retry", str(reply))
        else:
            http_status = reply.status
            try:
                verdict = provider.judge(first, reply)
            except Exception as error:  # noqa: BLE001 - an odd reply must not lose the result
                logs.error("judging a reply failed", delivery_id=first.delivery_id, error=self._clean(repr(error)))
                verdict = Verdict("retry", f"internal error: {type(error).__name__}: {error}")
        self.finish(deliveries, started, verdict, http_status)

    def finish(self, deliveries: list[Delivery], started: dt.datetime, verdict: Verdict,
               http_status: int | None) -> None:
        finished = utcnow()
        digest = {"digest_of": len(deliveries), "digest_id": deliveries[0].delivery_id} if len(deliveries) > 1 else {}
        for delivery in deliveries:
            outcome, retry_at = decide(delivery, verdict, self._settings, finished)
            outcome = Verdict(outcome.outcome, self._clean(outcome.error), outcome.reference, outcome.retry_after,
                              outcome.pause_provider)
            self._metrics.deliveries.labels(delivery.provider, delivery.action, outcome.outcome).inc()
            logs.info("delivery", delivery_id=delivery.delivery_id, alert_id=delivery.alert.get("id"),
                      provider=delivery.provider, action=delivery.action, attempt=delivery.attempt,
                      outcome=outcome.outcome, http_status=http_status,
                      ms=round((finished - started).total_seconds() * 1000, 1), **digest,
                      **({"error": outcome.error} if outcome.error else {}))
            self._record(result_row(delivery, outcome, started, finished, http_status, retry_at))
        self._inflight.judged(d.delivery_id for d in deliveries)
