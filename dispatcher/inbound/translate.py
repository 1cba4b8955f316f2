"""What each sender's payload means to pgalert: pure functions from parsed JSON to alerts or actions.

A payload that cannot mean anything raises BadPayload with a reason for the sender (a 400). A well-formed
event pgalert has no use for (PagerDuty's incident.annotated, Opsgenie's AddNote) is not an error: the
functions return None for it, and the endpoint answers 200 so the sender does not retry or give up on us.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from dispatcher.request_values import bounded_time, row_id

BATCH_MAX = 1000  # alerts in one request: Alertmanager's largest groups, with room
SEVERITIES = ("critical", "warning", "info", "P0", "P1", "P2")
# Alertmanager's severity label as people write it; anything else gets the configured default
ALERTMANAGER_SEVERITY = {
    "critical": "critical", "page": "critical", "emergency": "critical", "error": "critical", "high": "critical",
    "warning": "warning", "warn": "warning", "major": "warning", "medium": "warning",
    "info": "info", "informational": "info", "none": "info", "low": "info", "minor": "info",
}
ZERO_TIME_PREFIX = "0001-01-01"  # Alertmanager's endsAt while an alert fires
MAX_DEPTH = 32  # objects and arrays within one another; Alertmanager's deepest is 3
MAX_INTEGER_DIGITS = 1000


class BadPayload(ValueError):
    """The request cannot be understood; the message says why, for the sender."""


@dataclass(frozen=True)
class Rejected:
    """One alert of a batch that cannot be stored; the rest of the batch still counts."""

    reason: str


class _Unrepresentable:
    """A JSON number PostgreSQL cannot store (NaN, Infinity, 1e999, a thousand-digit integer), kept until the
    alert holding it is judged, so that only that alert is rejected."""

    def __init__(self, text: str):
        self.text = text[:20] + ("..." if len(text) > 20 else "")


def _number(text: str, convert) -> Any:
    value = convert(text) if len(text) <= MAX_INTEGER_DIGITS else None
    return value if isinstance(value, int) or (value is not None and math.isfinite(value)) else _Unrepresentable(text)


def parse_json(body: bytes) -> Any:
    """The body as JSON. A value that no alert could hold (a number PostgreSQL cannot store, a NUL, a lone
    surrogate, nesting deeper than MAX_DEPTH) is not refused here: unsafe_value_problem judges it where it is."""
    try:
        return json.loads(body, parse_int=lambda t: _number(t, int), parse_float=lambda t: _number(t, float),
                          parse_constant=_Unrepresentable)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadPayload(f"body is not JSON: {error}") from None
    except RecursionError:
        raise BadPayload(f"body is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:  # what json.loads lets through of int() and float()
        raise BadPayload(f"body is not JSON pgalert can store: {str(error)[:100]}") from None


def unsafe_value_problem(value: Any, what: str, depth: int = 0) -> str | None:
    """Why a parsed JSON value cannot reach PostgreSQL as text or jsonb, or None. PostgreSQL refuses NUL in
    text and jsonb, UTF-8 cannot carry a lone surrogate, and jsonb has no NaN or Infinity."""
    if depth > MAX_DEPTH:
        return f"{what} is nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, _Unrepresentable):
        return f"{what} is a number PostgreSQL cannot store ({value.text})"
    if isinstance(value, str):
        return _text_problem(value, what)
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _text_problem(key, f"{what} key") or unsafe_value_problem(item, f"{what}.{key[:40]}", depth + 1)
            if problem:
                return problem
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = unsafe_value_problem(item, f"{what}[{index}]", depth + 1)
            if problem:
                return problem
    return None


def _text_problem(text: str, what: str) -> str | None:
    if "\x00" in text:
        return f"{what} contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} is not valid Unicode (a lone surrogate)"
    return None


def refuse_unsafe(document: Any) -> Any:
    """The document, or BadPayload when any value in it cannot be stored (a provider's action is all or nothing)."""
    problem = unsafe_value_problem(document, "the payload")
    if problem:
        raise BadPayload(problem)
    return document


def _each_alert(item: Any, what: str, translate_one, *args) -> dict | Rejected:
    """One alert of a batch translated, or Rejected with the reason: a bad alert never fails the batch."""
    try:
        problem = unsafe_value_problem(item, what)
        if problem:
            return Rejected(problem)
        return translate_one(_object(item, what), what, *args)
    except BadPayload as error:
        return Rejected(str(error))


def _object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise BadPayload(f"{what} must be a JSON object")
    return value


def _text(document: dict, key: str, what: str, required: bool = False) -> str | None:
    value = document.get(key)
    if value is None or value == "":
        if required:
            raise BadPayload(f"{what}.{key} is required")
        return None
    if not isinstance(value, str):
        raise BadPayload(f"{what}.{key} must be a string")
    return value


def _time(value: Any, what: str) -> str | None:
    """An RFC 3339 time, kept as text for PostgreSQL, after checking it is one."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                raise BadPayload(f"{what} needs a time zone (e.g. 2026-11-30T10:00:00Z)")
            try:
                return bounded_time(parsed, what).isoformat()
            except ValueError as error:
                raise BadPayload(str(error)) from None
    raise BadPayload(f"{what} is not an RFC 3339 time")


# ---------------------------------------------------------------------------------------------------------
# The generic API: POST /v1/alerts
# ---------------------------------------------------------------------------------------------------------
def api_alerts(document: Any) -> list[dict | Rejected]:
    """One alert object, or an array of them; each that is not valid is Rejected with its reason."""
    items = document if isinstance(document, list) else [document]
    if not items or len(items) > BATCH_MAX:
        raise BadPayload(f"send 1 to {BATCH_MAX} alerts in one request")
    return [_each_alert(item, f"alert {i}", _api_alert) for i, item in enumerate(items)]


def _api_alert(item: dict, what: str) -> dict:
    status = item.get("status", "firing")
    if status not in ("firing", "resolved"):
        raise BadPayload(f"{what}.status must be firing or resolved")
    alert_type = _text(item, "alert_type", what, required=status == "firing" or not item.get("dedup_key"))
    details = item.get("details", {})
    if not isinstance(details, dict):
        raise BadPayload(f"{what}.details must be a JSON object")
    alert = {
        "status": status,
        "alert_type": alert_type,
        "dedup_key": _text(item, "dedup_key", what),
        "source": _text(item, "source", what) or "",
        "details": details,
    }
    if status == "firing":
        severity = _text(item, "severity", what, required=True)
        if severity not in SEVERITIES:
            raise BadPayload(f"{what}.severity must be one of {', '.join(SEVERITIES)}")
        alert.update(severity=severity, title=_text(item, "title", what, required=True),
                     message=_text(item, "message", what) or "",
                     occurred_at=_time(item.get("occurred_at"), f"{what}.occurred_at"))
    else:
        alert.update(resolved_at=_time(item.get("resolved_at"), f"{what}.resolved_at"),
                     note=_text(item, "note", what))
    return alert


# ---------------------------------------------------------------------------------------------------------
# Prometheus Alertmanager (and Grafana's webhook contact point): payload version 4
# ---------------------------------------------------------------------------------------------------------
def alertmanager_alerts(document: Any, default_severity: str = "warning") -> list[dict | Rejected]:
    """Each alert of the group, raised or resolved by its fingerprint (stable per label set), and remembered
    with its start time, so a repeat of the same firing is a no-op and a new firing of it is a new alert. An
    alert that is not valid is Rejected with its reason; the group's other alerts still count."""
    document = _object(document, "the payload")
    refuse_unsafe({k: v for k, v in document.items() if k != "alerts"})
    if str(document.get("version", "4")) != "4":
        raise BadPayload(f"Alertmanager payload version {document.get('version')!r} is not supported (only 4)")
    alerts = document.get("alerts")
    if not isinstance(alerts, list) or not alerts or len(alerts) > BATCH_MAX:
        raise BadPayload(f"alerts must be an array of 1 to {BATCH_MAX} alerts")
    context = {k: document[k] for k in ("receiver", "externalURL", "groupKey") if isinstance(document.get(k), str)}
    return [_each_alert(a, f"alerts[{i}]", _alertmanager_alert, default_severity, context)
            for i, a in enumerate(alerts)]


def _alertmanager_alert(alert: dict, what: str, default_severity: str, context: dict) -> dict:
    labels = {} if alert.get("labels") is None else alert["labels"]
    annotations = {} if alert.get("annotations") is None else alert["annotations"]
    if not isinstance(labels, dict) or not isinstance(annotations, dict):
        raise BadPayload(f"{what}.labels and .annotations must be JSON objects")
    labels = {str(k): str(v) for k, v in labels.items()}
    annotations = {str(k): str(v) for k, v in annotations.items()}
    status = alert.get("status")
    if status not in ("firing", "resolved"):
        raise BadPayload(f"{what}.status must be firing or resolved")
    fingerprint = alert.get("fingerprint") if isinstance(alert.get("fingerprint"), str) else None
    # without a fingerprint (older senders), the same label set still makes the same key
    fingerprint = fingerprint or hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
    starts_at = _time(alert.get("startsAt"), f"{what}.startsAt")
    ends_raw = alert.get("endsAt")
    ends_at = None if not ends_raw or str(ends_raw).startswith(ZERO_TIME_PREFIX) else _time(ends_raw, f"{what}.endsAt")
    alertname = labels.get("alertname") or "alertmanager"
    details: dict[str, Any] = {"labels": labels, "annotations": annotations, "fingerprint": fingerprint, **context}
    for key in ("generatorURL", "dashboardURL", "panelURL", "silenceURL"):
        if isinstance(alert.get(key), str) and alert[key]:
            details[key] = alert[key]
    if annotations.get("runbook_url"):
        details["runbook_url"] = annotations["runbook_url"]  # shown as a link by every provider
    link_names = (("generatorURL", "Source"), ("dashboardURL", "Dashboard"), ("panelURL", "Panel"),
                  ("silenceURL", "Silence"))
    links = [{"href": details[k], "text": text} for k, text in link_names if k in details]
    if links:
        details["links"] = links
    return {
        "status": status,
        "alert_type": alertname,
        "severity": ALERTMANAGER_SEVERITY.get(labels.get("severity", "").lower(), default_severity),
        "title": annotations.get("summary") or annotations.get("title") or alertname,
        "message": annotations.get("description") or annotations.get("message") or "",
        "source": labels.get("instance") or labels.get("job") or "",
        "dedup_key": f"alertmanager:{fingerprint}",
        "details": details,
        "occurred_at": starts_at,
        "resolved_at": ends_at,
        "instance": f"{fingerprint}@{starts_at or ''}",
    }


# ---------------------------------------------------------------------------------------------------------
# Actions taken at a provider
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProviderAction:
    """A responder did something at a provider. action is None for an event pgalert has no use for."""

    via: str
    action: str | None
    receipt_id: str | None  # the provider's id for this delivery: repeats carry the same one
    provider_key: str | None  # the key pgalert gave the alert, when the payload carries it
    reference: str | None  # the provider's own id for the alert (a PagerDuty incident id)
    actor: str | None
    occurred_at: str | None
    event: str  # what the provider called it, for logs and metrics
    note: str | None = None


PAGERDUTY_ACTIONS = {
    "incident.acknowledged": "acknowledge",
    "incident.resolved": "resolve",
    "incident.unacknowledged": "unacknowledge",  # the acknowledgement timed out: nobody owns it again
    "incident.reopened": "reopen",
}


def pagerduty_action(document: Any) -> ProviderAction:
    """The receipt is the event's id, which the signature covers: the X-Webhook-Id header is not signed, so a
    captured webhook re-sent with a new header would otherwise act again."""
    event = _object(_object(refuse_unsafe(document), "the payload").get("event"), "event")
    event_type = _text(event, "event_type", "event", required=True)
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    incident_key = data.get("incident_key") if isinstance(data.get("incident_key"), str) else None
    agent = event.get("agent") if isinstance(event.get("agent"), dict) else {}
    action = PAGERDUTY_ACTIONS.get(event_type) if event.get("resource_type", "incident") == "incident" else None
    if action and not isinstance(data.get("id"), str):
        raise BadPayload("event.data.id (the incident id) is required")
    return ProviderAction(
        via="pagerduty", action=action, receipt_id=_text(event, "id", "event", required=action is not None),
        provider_key=incident_key, reference=data.get("id") if isinstance(data.get("id"), str) else None,
        actor=str(agent.get("summary") or "") or None, occurred_at=_time(event.get("occurred_at"), "event.occurred_at"),
        event=event_type,
    )


OPSGENIE_ACTIONS = {"Acknowledge": "acknowledge", "Close": "resolve", "UnAcknowledge": "unacknowledge"}


def opsgenie_action(document: Any) -> ProviderAction:
    document = _object(refuse_unsafe(document), "the payload")
    name = _text(document, "action", "the payload", required=True)
    alert = _object(document.get("alert"), "alert")
    action = OPSGENIE_ACTIONS.get(name)
    alias = _text(alert, "alias", "alert")
    if action and not alias:
        raise BadPayload("alert.alias is required")
    updated = alert.get("updatedAt")
    alert_id = alert.get("alertId")
    receipt = f"{alert_id}/{name}/{updated}" if alert_id and updated else None
    return ProviderAction(
        via="opsgenie", action=action, receipt_id=receipt, provider_key=alias, reference=alert_id or None,
        actor=str(alert.get("username") or "") or None, occurred_at=epoch_time(updated), event=name,
        note=str(alert.get("note") or "") or None,
    )


def epoch_time(value: Any) -> str | None:
    """Opsgenie's times are epoch numbers in seconds, milliseconds or nanoseconds depending on the field."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        return None
    for scale in (1e9, 1e6, 1e3, 1):
        if value >= 1e9 * scale:  # any time after 2001 in that unit
            return _epoch(value / scale)
    return None


def _epoch(seconds: float) -> str | None:
    """A Unix time as RFC 3339, or None when it is not one (infinite, NaN, past 9000)."""
    try:
        return bounded_time(dt.datetime.fromtimestamp(seconds, dt.UTC), "the time").isoformat()
    except (ValueError, OverflowError, OSError):
        return None


@dataclass(frozen=True)
class SlackClick:
    action: str | None
    provider_key: str | None
    member_id: str
    username: str | None
    action_ts: str
    response_url: str | None
    message: dict | None

    def as_action(self) -> ProviderAction:
        try:
            at = _epoch(float(self.action_ts))
        except ValueError:
            at = None
        # at None: the click's own time is unknown, and the database's now() stands in
        return ProviderAction(
            via="slack", action=self.action, receipt_id=f"{self.action_ts}/{self.member_id}/{self.action}",
            provider_key=self.provider_key, reference=None, actor=self.username, occurred_at=at,
            event=f"block_actions:{self.action}",
        )


SLACK_ACTIONS = {"pgalert_acknowledge": "acknowledge", "pgalert_resolve": "resolve"}


def slack_click(form_payload: str | None) -> SlackClick:
    if not form_payload:
        raise BadPayload("the form field payload is missing")
    document = _object(refuse_unsafe(parse_json(form_payload.encode())), "payload")
    if document.get("type") != "block_actions":
        return SlackClick(None, None, "", None, "0", None, None)
    user = _object(document.get("user"), "payload.user")
    actions = document.get("actions")
    if not isinstance(actions, list) or not actions:
        raise BadPayload("payload.actions is empty")
    first = _object(actions[0], "payload.actions[0]")
    member = _text(user, "id", "payload.user", required=True)
    return SlackClick(
        action=SLACK_ACTIONS.get(str(first.get("action_id"))), provider_key=_text(first, "value", "payload.actions[0]"),
        member_id=member, username=_text(user, "username", "payload.user") or _text(user, "name", "payload.user"),
        action_ts=str(first.get("action_ts") or "0"), response_url=_text(document, "response_url", "payload"),
        message=document.get("message") if isinstance(document.get("message"), dict) else None,
    )


def slack_updated_message(message: dict | None, outcome: str, member_id: str, status: str | None) -> dict:
    """The clicked message as it should now read: the pgalert buttons that no longer apply removed, and a line
    that says who did what (or why nothing changed)."""
    blocks = [dict(b) for b in (message or {}).get("blocks", []) if isinstance(b, dict)]
    kept = []
    for block in blocks:
        if block.get("type") == "actions" and block.get("block_id") == "pgalert_lifecycle":
            buttons = [e for e in block.get("elements", []) if isinstance(e, dict)
                       and not (status in ("acknowledged", "resolved") and e.get("action_id") == "pgalert_acknowledge")
                       and not (status == "resolved" and e.get("action_id") == "pgalert_resolve")]
            if not buttons:
                continue
            block["elements"] = buttons
        kept.append(block)
    said = {
        "acknowledged": f":eyes: Acknowledged by <@{member_id}>",
        "resolved": f":white_check_mark: Resolved by <@{member_id}>",
        "duplicate": f":information_source: <@{member_id}>: that click was already counted",
        "unknown_alert": f":warning: <@{member_id}>: this alert is not in pgalert any more",
        "not_sent_there": f":warning: <@{member_id}>: this alert was never sent to Slack: act on it where it was",
    }.get(outcome, f":information_source: <@{member_id}>: the alert is already {status or 'gone'}, nothing changed")
    kept.append({"type": "context", "elements": [{"type": "mrkdwn", "text": said}]})
    text = (message or {}).get("text") or said
    return {"replace_original": True, "text": text, "blocks": kept[:50]}


# --- a paged person's phone (sql/paging.sql) ---------------------------------------------------------------

@dataclass(frozen=True)
class PhoneReply:
    """What a text back to the Twilio number asks: acknowledge or resolve (of the alert named, or the one page
    running), stop or start (carriers' opt-out words), or nothing understood (action None)."""

    action: str | None
    alert_id: int | None = None


REPLY_VERBS = {"4": "acknowledge", "a": "acknowledge", "ack": "acknowledge", "acknowledge": "acknowledge",
               "6": "resolve", "r": "resolve", "res": "resolve", "resolve": "resolve", "close": "resolve"}
# the words carriers and Twilio's Advanced Opt-Out treat as STOP and START
OPT_OUT_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
OPT_IN_WORDS = {"start", "yes", "unstop", "optin"}
KEYPRESSES = {"4": "acknowledge", "6": "resolve"}
REPLY_HINT = "Reply 4 to acknowledge or 6 to resolve, with the alert's number when several page you: 4 123."


def sms_reply(text: str) -> PhoneReply:
    """`4`, `ack`, `4 123`, `ack 123`, `6 123`, `resolve 123`; STOP and START as carriers define them."""
    words = text.strip().lower().replace("#", " ").split()
    if len(words) == 1 and words[0] in OPT_OUT_WORDS:
        return PhoneReply("stop")
    if len(words) == 1 and words[0] in OPT_IN_WORDS:
        return PhoneReply("start")
    named = words[1] if len(words) == 2 else None
    if not words or words[0] not in REPLY_VERBS or len(words) > 2:
        return PhoneReply(None)
    try:
        return PhoneReply(REPLY_VERBS[words[0]], row_id(named, "the alert") if named is not None else None)
    except ValueError:
        return PhoneReply(None)


def keypress(digits: str | None) -> str | None:
    """A key pressed in a page's call: 4 acknowledges, 6 resolves."""
    return KEYPRESSES.get((digits or "").strip())


def twiml(say: str | None = None, message: str | None = None) -> bytes:
    """The answer Twilio reads back: words said in a call, or a text sent back; an empty Response says nothing."""
    from xml.sax.saxutils import escape

    inner = (f"<Say>{escape(say)}</Say>" if say else "") + (f"<Message>{escape(message)}</Message>" if message else "")
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{inner}</Response>'.encode()


def phone_answer(outcome: str, alert_id: int | None, action: str) -> str | None:
    """What the person is told of what their text or keypress did; nothing for a stranger or a repeat."""
    done = {"acknowledged": "Acknowledged", "resolved": "Resolved"}
    if outcome in done:
        return f"{done[outcome]} alert {alert_id}."
    if outcome.startswith("already_"):
        return f"Alert {alert_id} was already {outcome.removeprefix('already_')}."
    if outcome == "ambiguous":
        return f"Several alerts are paging you: reply {'4' if action == 'acknowledge' else '6'} and the alert's number."
    return None  # unknown_sender, duplicate: tell a stranger nothing
