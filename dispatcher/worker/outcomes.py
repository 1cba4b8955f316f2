"""Pure decisions about one delivery: its row as claimed, the request it becomes, what a verdict means for its
next attempt, and the result row the recorder writes. No I/O here."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

from dispatcher import logs
from dispatcher.providers.base import Delivery, Provider, Request, Verdict, minimal_alert
from dispatcher.settings import Settings


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
