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

from dispatcher.providers.base import (
    Delivery,
    HttpRequest,
    HttpResponse,
    Verdict,
    bounded,
    details_of,
    json_body,
    judge_by_status,
    truncate,
)

# the database's own limits (0012), applied again to rows stored before them
DETAILS_MAX_BYTES = 64 * 1024
MESSAGE_MAX = 20000


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


def bounded_alert(alert: dict) -> dict:
    """The alert as stored, within the database's own limits (0012), also for rows stored before them."""
    text_limits = {"title": 1024, "message": MESSAGE_MAX, "source": 500, "dedup_key": 500, "alert_type": 200}
    return {
        **alert,
        **{key: truncate(str(alert[key]), limit) for key, limit in text_limits.items() if alert.get(key) is not None},
        "details": bounded(details_of(alert), DETAILS_MAX_BYTES),
    }


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
            "alert": bounded_alert(delivery.alert),
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
