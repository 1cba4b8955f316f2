"""Sentry: one event per alert through the envelope endpoint, grouped into one issue by our dedup key."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from dispatcher import __version__
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

LEVEL = {"critical": "fatal", "warning": "warning", "info": "info"}
MESSAGE_MAX = 8192
EXTRA_MAX_BYTES = 64 * 1024
EVENT_NAMESPACE = uuid.UUID("6f1b1a4e-8c1f-4d55-9a57-3f2f0b6f5a10")


class SentryConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SentryTarget:
    envelope_url: str
    public_key: str
    dsn: str | None


def parse_sentry_target(dsn: str | None = None, webhook_url: str | None = None,
                        name: str | None = None) -> SentryTarget:
    """SENTRY_DSN, or the seed's SENTRY_WEBHOOK_URL: either a DSN too, or an envelope URL with ?sentry_key=.
    Errors call the value `name` (a channel's secret and its variable), else by the default variable."""
    value = dsn or webhook_url or ""
    name = name or ("SENTRY_DSN" if dsn else "SENTRY_WEBHOOK_URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SentryConfigError(f"{name} must be an http(s) URL")
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    if parts.username:  # DSN: https://<public_key>@host/<project_id>
        path, _, project_id = parts.path.rstrip("/").rpartition("/")
        if not project_id.isdigit():
            raise SentryConfigError(f"{name} looks like a DSN but does not end in a numeric project id")
        return SentryTarget(f"{parts.scheme}://{host}{path}/api/{project_id}/envelope/", parts.username, value)
    key = parse_qs(parts.query).get("sentry_key", [""])[0]
    if parts.path.rstrip("/").endswith("/envelope") and key:
        return SentryTarget(f"{parts.scheme}://{host}{parts.path}", key, None)
    raise SentryConfigError(
        f"{name} is neither a DSN (https://KEY@HOST/PROJECT_ID) nor an envelope URL "
        "(https://HOST/api/PROJECT_ID/envelope/?sentry_key=KEY)"
    )


def event_id(delivery: Delivery) -> str:
    """The same delivery always makes the same id, so Sentry drops a retried duplicate."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{delivery.provider_key}/{delivery.action}/{delivery.delivery_id}").hex


@dataclass(frozen=True)
class Sentry(OneAtATime):
    target: SentryTarget
    name: str = "sentry"

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.target.public_key, self.target.dsn) if s)

    def build(self, delivery: Delivery) -> HttpRequest | None:
        if delivery.action != "trigger":
            return None
        event = build_event(delivery)
        sent_at = dt.datetime.now(dt.UTC).isoformat()
        header = {"event_id": event["event_id"], "sent_at": sent_at}
        if self.target.dsn:
            header["dsn"] = self.target.dsn
        item = json_body(event)
        envelope = b"\n".join([json_body(header), json_body({"type": "event", "length": len(item)}), item]) + b"\n"
        auth = f"Sentry sentry_version=7, sentry_client=pgalert/{__version__}, sentry_key={self.target.public_key}"
        headers = {"Content-Type": "application/x-sentry-envelope", "X-Sentry-Auth": auth}
        return HttpRequest("POST", self.target.envelope_url, headers, envelope)

    def judge(self, delivery: Delivery, response: HttpResponse) -> Verdict:
        verdict = judge_by_status(response)
        limits = rate_limit_seconds(response.headers.get("x-sentry-rate-limits"))
        if limits is not None and response.status == 429:
            return Verdict("retry", verdict.error, retry_after=limits, pause_provider=True)
        if verdict.outcome == "succeeded":
            return Verdict("succeeded", reference=event_id(delivery))
        return verdict


def rate_limit_seconds(header: str | None) -> float | None:
    """X-Sentry-Rate-Limits: `retry_after:categories:scope[:reason], ...`; the longest wait covering errors."""
    if not header:
        return None
    waits = []
    for limit in header.split(","):
        fields = limit.strip().split(":")
        categories = fields[1].split(";") if len(fields) > 1 else [""]
        if any(c in ("", "error", "default") for c in categories):
            try:
                waits.append(float(fields[0]))
            except ValueError:
                continue
    return max(waits) if waits else None


def build_event(delivery: Delivery) -> dict:
    alert = delivery.alert
    return {
        "event_id": event_id(delivery),
        "timestamp": alert.get("created_at"),
        "platform": "other",
        "level": LEVEL[alert["severity"]],
        "logger": "pgalert",
        "server_name": truncate(alert.get("source") or "", 200) or None,
        "message": {"formatted": truncate(f"{alert['title']}: {alert.get('message') or ''}".rstrip(": "), MESSAGE_MAX)},
        "fingerprint": ["pgalert", str(alert.get("dedup_key"))],
        "tags": {
            "alert_type": truncate(alert["alert_type"], 200),
            "severity": alert["severity"],
            "priority": alert.get("priority"),
            "pgalert_alert_id": str(alert["id"]),
        },
        # Sentry refuses events over 1 MB; the details are the only part of unbounded size
        "extra": {"details": bounded(details_of(alert), EXTRA_MAX_BYTES), "occurrences": alert.get("occurrence_count")},
    }
