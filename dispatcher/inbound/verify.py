"""Who sent a request: provider signatures and client tokens, checked on the raw bytes before any parsing.

Every comparison is constant-time; nothing here logs or returns a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence

SLACK_REPLAY_WINDOW = 300  # seconds: Slack's documented tolerance for X-Slack-Request-Timestamp
TOKEN_PREFIX = "pga_"
DIGITS = re.compile(r"[0-9]{1,19}")


def pagerduty_signature_ok(body: bytes, header: str | None, webhook_secrets: Sequence[str]) -> bool:
    """X-PagerDuty-Signature holds one or more `v1=<hex HMAC-SHA256 of the body>` (several while a subscription's
    secret rotates); any one made with any configured secret is enough."""
    if not header or not webhook_secrets:
        return False
    offered = [part.strip()[3:] for part in header.split(",") if part.strip().startswith("v1=")]
    expected = [hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in webhook_secrets]
    found = False
    for signature in offered:
        for digest in expected:  # no early exit: the time taken says nothing about which part matched
            found |= hmac.compare_digest(signature.lower().encode(), digest.encode())
    return found


def slack_signature_problem(body: bytes, timestamp: str | None, signature: str | None, signing_secret: str,
                            now: float) -> str | None:
    """None when the request is Slack's: `v0=` + HMAC-SHA256 of `v0:<timestamp>:<body>`, with a timestamp within
    five minutes of now (an older one is a replay); otherwise the reason, without the secret."""
    if not timestamp or not signature:
        return "X-Slack-Request-Timestamp or X-Slack-Signature is missing"
    if not DIGITS.fullmatch(timestamp):  # int() would take " 1", "+1", "1_0" and "١"
        return "X-Slack-Request-Timestamp is not a number"
    sent_at = int(timestamp)
    if abs(now - sent_at) > SLACK_REPLAY_WINDOW:
        return "X-Slack-Request-Timestamp is more than 5 minutes from now (a replay, or a clock far off)"
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return "X-Slack-Signature does not match"
    return None


def new_token() -> str:
    """A client token: 256 random bits, prefixed so a leaked one is recognisable (and scannable)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_sha256(token: str) -> bytes:
    """What the database keeps of a token. A token is 256 random bits, so a plain SHA-256 cannot be reversed
    by guessing; a slow password hash would only slow every request."""
    return hashlib.sha256(token.encode()).digest()


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def shared_token_ok(offered: str | None, expected: str) -> bool:
    return bool(offered) and bool(expected) and hmac.compare_digest(offered.encode(), expected.encode())


def twilio_signed(url: str, params: Sequence[tuple[str, str]]) -> bytes:
    """What X-Twilio-Signature covers: the full URL Twilio called followed by every POST parameter's name and
    value, sorted by name, with nothing between them (Twilio's "Secure webhooks")."""
    return (url + "".join(name + value for name, value in sorted(params, key=lambda pair: pair[0]))).encode()


def twilio_signature_ok(url: str, params: Sequence[tuple[str, str]], signature: str | None, auth_token: str) -> bool:
    """X-Twilio-Signature: base64 of HMAC-SHA1, keyed by the Auth Token, over twilio_signed."""
    if not signature or not auth_token:
        return False
    expected = base64.b64encode(hmac.new(auth_token.encode(), twilio_signed(url, params), hashlib.sha1).digest())
    return hmac.compare_digest(signature.strip().encode(), expected)


def twilio_receipt(url: str, params: Sequence[tuple[str, str]]) -> str:
    """The receipt of a Twilio callback: a digest of exactly what its signature covers. Names and values run
    together can be split again (the tail of MessageSid moved into the next name, a query string's end into the
    first name) with the signature still good, so a receipt from any one parameter would let one captured request
    act again under each split; every split of one signed string has this one receipt (and so have Twilio's own
    retries). A digest rather than the signature itself, which readers of monitoring_inbound_actions need not hold."""
    return "twilio:" + hashlib.sha256(twilio_signed(url, params)).hexdigest()


def action_token(key: str, delivery_id: int, expires_at: int) -> str:
    """A URL token that lets whoever holds it act once on the alert of one delivery until expires_at (a Unix
    time): what an ntfy Acknowledge button carries. Made by the dispatcher, checked by `pgalert serve`, with the
    key both are given (PGALERT_ACTION_KEY)."""
    payload = f"{delivery_id}.{expires_at}"
    mac = hmac.new(key.encode(), b"pgalert-action:" + payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def action_token_delivery(key: str, token: str, now: float) -> int | None:
    """The delivery a token names, when it was made with this key and has not expired; else None."""
    delivery, _, rest = token.partition(".")
    expires, _, _mac = rest.partition(".")
    # ASCII digits only: isdigit() takes `²`, which int() then refuses
    if not (key and DIGITS.fullmatch(delivery) and DIGITS.fullmatch(expires) and len(token) < 200):
        return None
    if not hmac.compare_digest(token.encode(), action_token(key, int(delivery), int(expires)).encode()):
        return None
    return int(delivery) if int(expires) > now else None
