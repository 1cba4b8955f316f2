"""A generic JSON webhook, signed with HMAC-SHA256 so the receiver can prove it came from us.

Signature header: `X-Pgalert-Signature: t=<unix seconds>,v1=<hex hmac_sha256(secret, "<t>.<body>")>`;
a receiver recomputes it and rejects stale timestamps, which stops replays. `X-Pgalert-Delivery` is
an idempotency key: the same delivery always carries the same value.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

from dispatcher.providers.base import Delivery, HttpRequest, HttpResponse, Verdict, json_body, judge_by_status


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str
    name: str = "webhook"

    def secrets(self) -> tuple[str, ...]:
        return (self.secret,)

    def build(self, delivery: Delivery, now: float | None = None) -> HttpRequest | None:
        body = json_body({
            "event": delivery.action,
            "delivery_id": delivery.delivery_id,
            "key": delivery.provider_key,
            "target": delivery.target or None,
            "context": delivery.context,
            "alert": delivery.alert,
        })
        timestamp = int(now if now is not None else time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "pgalert",
            "X-Pgalert-Signature": sign(self.secret, timestamp, body),
            "X-Pgalert-Delivery": f"{delivery.provider_key}/{delivery.delivery_id}",
        }
        return HttpRequest("POST", self.url, headers, body)

    def judge(self, delivery: Delivery, response: HttpResponse) -> Verdict:
        return judge_by_status(response)
