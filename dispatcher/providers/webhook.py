"""A generic JSON webhook, signed by the Standard Webhooks scheme (standardwebhooks.com), so a receiver
verifies it with any of that scheme's libraries given PGALERT_WEBHOOK_SECRET.

- `webhook-id`: the idempotency key, the same for every attempt of one delivery;
- `webhook-timestamp`: unix seconds; receivers refuse stale ones, which stops replays;
- `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, where the key is the
  secret read as those libraries read it: `whsec_` stripped, the rest base64-decoded.

0.1.0's own header, `X-Pgalert-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, is still sent
for receivers written against it (with `X-Pgalert-Delivery`); it goes away in a later release.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass

from dispatcher.providers.base import (
    Delivery,
    HttpRequest,
    HttpResponse,
    OneAtATime,
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


class WebhookSecretError(ValueError):
    pass


def signing_key(secret: str, channel: bool = False) -> bytes:
    """The key a Standard Webhooks library derives from the same secret string: `whsec_` and base64.

    A channel's secret (named by a row an admin wrote) must be exactly that form with 24 to 64 bytes, as the
    scheme asks: a shorter or free-form value could be guessed offline by anyone who receives one signed
    webhook."""
    if not secret.startswith("whsec_"):
        raise WebhookSecretError(_SECRET_FORM)
    try:
        key = base64.b64decode(secret.removeprefix("whsec_") + ("" if channel else "=="), validate=channel)
    except (binascii.Error, ValueError):
        key = b""
    if not key or (channel and not 24 <= len(key) <= 64):
        raise WebhookSecretError(_SECRET_FORM + (" (24 to 64 bytes)" if channel else ""))
    return key


_SECRET_FORM = ("must be a Standard Webhooks secret: whsec_ followed by base64, e.g. "
                "whsec_$(openssl rand -base64 32)")


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(signing_key(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """0.1.0's X-Pgalert-Signature."""
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
class Webhook(OneAtATime):
    url: str
    secret: str
    name: str = "webhook"
    # 0.1.0's X-Pgalert-Signature, for the default channel's receivers written against it; channels came later
    # and never had one
    legacy_signature: bool = True

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
        message_id = f"{delivery.provider_key}/{delivery.delivery_id}"
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "pgalert",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": standard_signature(self.secret, message_id, timestamp, body),
        }
        if self.legacy_signature:
            headers["X-Pgalert-Signature"] = sign(self.secret, timestamp, body)
            headers["X-Pgalert-Delivery"] = message_id
        return HttpRequest("POST", self.url, headers, body)

    def judge(self, delivery: Delivery, response: HttpResponse) -> Verdict:
        return judge_by_status(response)
