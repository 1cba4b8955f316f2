"""What every provider shares: the claimed delivery, the HTTP request it becomes, and how a reply is judged.

Everything here is pure: building a request and judging a response never touch the network or the database,
so payload rules (limits, keys, severity mapping, retry classification) are tested without either.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Delivery:
    """One claimed row of monitoring_deliveries, with its alert."""

    delivery_id: int
    attempt: int
    provider: str
    action: str  # trigger | acknowledge | resolve | notify
    target: str
    context: dict[str, Any]
    provider_key: str  # stable per alert and installation: the provider-side dedup key
    alert: dict[str, Any]


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class MailRequest:
    """One message for an SMTP server: smtps:// is TLS from the first byte, smtp:// must upgrade with STARTTLS
    (except to this machine's own relay, which may not offer it). The reply comes back as an HttpResponse whose
    status is the server's last SMTP reply code (250 when the message was accepted) and whose body is that line."""

    url: str
    mail_from: str
    recipients: tuple[str, ...]
    message: bytes
    username: str = ""
    password: str = ""
    starttls_required: bool = True


Request = HttpRequest | MailRequest


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass(frozen=True)
class Verdict:
    """How one attempt ended, in the vocabulary of monitoring_complete_deliveries."""

    outcome: str  # succeeded | retry | failed | skipped
    error: str | None = None
    reference: str | None = None
    retry_after: float | None = None  # seconds the provider asked us to wait
    pause_provider: bool = False  # the wait applies to every send to this provider, not just this one


class Provider(Protocol):
    name: str
    digest_max: int  # deliveries one request may carry: above 1, what exceeds the pace is folded into a digest

    def secrets(self) -> tuple[str, ...]:
        """Strings that must never reach a log, an error message or the database."""

    def build(self, delivery: Delivery) -> Request | None:
        """The request for this delivery, or None when the provider has nothing to say for this action."""

    def build_digest(self, deliveries: list[Delivery]) -> Request:
        """One request for 2 to digest_max deliveries (only asked of a provider whose digest_max is above 1)."""

    def judge(self, delivery: Delivery, response: HttpResponse) -> Verdict:
        """Classify a reply: success, worth retrying, or final."""


class OneAtATime:
    """What a provider without digests says: a request carries one delivery."""

    digest_max = 1

    def build_digest(self, deliveries: list[Delivery]) -> Request:
        raise TypeError(f"{type(self).__name__} sends one delivery a request, not {len(deliveries)}")


@dataclass(frozen=True)
class Unconfigured(OneAtATime):
    """A provider whose settings are missing: its deliveries are skipped, visibly, with the reason."""

    name: str
    reason: str
    _secrets: tuple[str, ...] = field(default=())

    def secrets(self) -> tuple[str, ...]:
        return self._secrets

    def build(self, delivery: Delivery) -> Request | None:
        return None

    def judge(self, delivery: Delivery, response: HttpResponse) -> Verdict:
        return Verdict("skipped", self.reason)


def json_body(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str).encode()


def truncate(text: str | None, limit: int, marker: str = "…") -> str:
    """Cut to at most `limit` characters (code points, so never inside a character), marking the cut."""
    text = text or ""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(marker), 0)] + marker[: limit]


def escape_within(text: str, limit: int, escape: Callable[[str], str], marker: str = "…") -> str:
    """`text` escaped for a vendor's markup in at most `limit` characters. Cut before escaping, never after: a
    cut after would split an escape (`&am…`), and escaping after a cut would grow the text past the limit (a
    title of 1,024 `&` is 5,120 characters of XML). `escape` must escape each character on its own."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    tail = escape(marker)
    budget, size, kept = limit - len(tail), 0, []
    for char in text:
        piece = escape(char)
        if size + len(piece) > budget:
            break
        kept.append(piece)
        size += len(piece)
    return "".join(kept) + tail if len(tail) <= limit else "".join(kept)


def truncate_utf8(text: str, max_bytes: int, marker: str = "…") -> str:
    """Cut so the UTF-8 encoding fits in max_bytes, at a character boundary."""
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    budget = max_bytes - len(marker.encode())
    return encoded[: max(budget, 0)].decode(errors="ignore") + marker


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse Retry-After: delay-seconds or an HTTP-date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (now if now is not None else time.time()), 0.0)


def judge_by_status(response: HttpResponse, *, retry_on: frozenset[int] = frozenset({408, 425, 429})) -> Verdict:
    """The common rule: 2xx succeeded; 429, 408 and 5xx are worth retrying; any other 4xx is final."""
    status = response.status
    if 200 <= status < 300:
        return Verdict("succeeded")
    detail = f"HTTP {status}: {response_text(response)}"
    if status in retry_on or status >= 500:
        wait = retry_after_seconds(response.headers.get("retry-after"))
        return Verdict("retry", detail, retry_after=wait, pause_provider=status == 429)
    return Verdict("failed", detail)


def response_text(response: HttpResponse, limit: int = 300) -> str:
    """A reply body fit for an error message: decoded, printable, short (PostgreSQL text cannot hold NUL)."""
    text = response.body.decode(errors="replace")
    text = "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text[: limit * 2])
    return truncate(text.strip(), limit)


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def details_of(alert: dict[str, Any]) -> dict[str, Any]:
    """An alert's details as an object, whatever the row holds: rows stored before pgalert 0.2.0 may hold any
    JSON value, and the database now keeps a non-object as {"value": ...} (the same shape as here)."""
    details = alert.get("details")
    if isinstance(details, dict):
        return details
    return {} if details is None else {"value": details}


def bounded(document: Any, max_bytes: int) -> Any:
    """The document itself when its JSON fits in max_bytes, else an object that says so with a preview."""
    body = json_body(document)
    if len(body) <= max_bytes:
        return document
    return {"pgalert_truncated": f"{len(body)} bytes of JSON cut to fit {max_bytes}",
            "preview": truncate_utf8(body.decode(errors="replace"), max(max_bytes - 200, 0))}


KNOWN_SEVERITIES = ("critical", "warning", "info")


def minimal_alert(alert: dict[str, Any]) -> dict[str, Any]:
    """What can always be sent when the full payload of a stored alert would not build: who, what, how bad.
    A bug in a payload builder must still page, with the title, severity and id, never retry for ever."""
    severity = alert.get("severity") if alert.get("severity") in KNOWN_SEVERITIES else "critical"
    return {
        "id": alert.get("id"),
        "alert_type": truncate(str(alert.get("alert_type") or "unknown"), 200),
        "severity": severity,
        "priority": {"critical": "P0", "warning": "P1", "info": "P2"}[severity],
        "title": truncate(str(alert.get("title") or "pgalert alert"), 1024),
        "message": "",
        "source": "",
        "dedup_key": truncate(str(alert.get("dedup_key") or ""), 500),
        "details": {},
        "status": alert.get("status"),
        "occurred_at": alert.get("occurred_at"),
        "created_at": alert.get("created_at"),
        "occurrence_count": alert.get("occurrence_count"),
    }


def alert_links(alert: dict[str, Any]) -> list[dict[str, str]]:
    """Links an app put in details: `runbook_url`, and `links` as [{"href", "text"}], each labelled by
    link_label."""
    details = details_of(alert)
    links: list[dict[str, str]] = []
    runbook = details.get("runbook_url")
    if isinstance(runbook, str) and runbook.startswith(("http://", "https://")):
        links.append({"href": runbook, "text": link_label("Runbook", runbook)})
    links_given = details.get("links")
    for link in links_given if isinstance(links_given, list) else []:
        if isinstance(link, dict) and str(link.get("href", "")).startswith(("http://", "https://")):
            href = str(link["href"])
            links.append({"href": href, "text": link_label(str(link.get("text") or ""), href)})
    return links


# words of pgalert's own actions (and of the providers'): a writer's link labelled so is marked as a link
ACTION_WORDS = re.compile(r"ack|acknowledge|unacknowledge|resolve|close|silence|snooze|mute|escalate|reopen|"
                          r"accept|confirm|approve|login|signin|verify")


def link_label(text: str, href: str) -> str:
    """How a writer's link is labelled in every provider's message: its text followed by the host it leads to.
    pgalert's own actions (Slack's Acknowledge and Resolve buttons) never name a host, so no link an app sends
    can pass for one of them; a label that reads as an action word is also marked as a link."""
    host = urlsplit(href).hostname or "?"
    label = " ".join(text.split())[:60] or host
    plain = "".join(c for c in unicodedata.normalize("NFKC", label).casefold() if c.isalpha())
    if ACTION_WORDS.fullmatch(plain):
        label = f"Link: {label}"
    return label if label == host else f"{label} ({host})"


def who(delivery: Delivery) -> str:
    return str(delivery.context.get("by") or "someone")


# where a responder acted, as people call it: "Acknowledged by alice in PagerDuty"
VIA = {"pagerduty": "PagerDuty", "opsgenie": "Opsgenie", "jsm": "Jira Service Management", "slack": "Slack",
       "alertmanager": "Alertmanager", "api": "the API", "rule": "its rule", "group": "its group"}


def where(delivery: Delivery) -> str:
    """" in PagerDuty" when a responder acted there; nothing for SQL."""
    via = delivery.context.get("via")
    return f" in {VIA.get(via, str(via))}" if via and via != "sql" else ""
