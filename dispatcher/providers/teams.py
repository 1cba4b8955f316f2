"""Microsoft Teams through a Workflows webhook ("Post to a channel when a webhook request is received"): an
Adaptive Card per alert, and a card per acknowledge, resolve and page. Office 365 connectors are retired, so this
is the way a Teams channel takes messages from outside.

The Workflows URL carries its own signature (`sig=`), so the whole URL is a secret. The flow answers 202 Accepted
with an empty body; it takes a message of at most 28 KB. Like Slack's webhook it has no idempotency key: a
retried send can show twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from dispatcher.providers.base import (
    Delivery,
    HttpRequest,
    HttpResponse,
    OneAtATime,
    Verdict,
    alert_links,
    escape_within,
    json_body,
    judge_by_status,
    truncate,
    where,
    who,
)

MESSAGE_MAX_BYTES = 28 * 1024
CARD_VERSION = "1.4"  # what Teams renders for webhook cards
TEXT_MAX = 5000
TITLE_MAX = 400
ACTIONS_MAX = 5
NAME_MAX, REASON_MAX = 200, 600
URL_MAX = 2048  # a longer link would crowd the card out of its 28 KB; it stays in the alert's details
SEVERITY_COLOR = {"critical": "Attention", "warning": "Warning", "info": "Accent"}
# what makes a link or formatting; "_" is left (snake_case keys are common, and it only ever makes italics)
MARKDOWN = re.compile(r"([\\`*\[\]~])")


def escape(text: str) -> str:
    """Teams reads TextBlock and Fact values as Markdown: escaped, a writer's [Acknowledge](https://x) or
    **text** is shown as typed, never a link or formatting that passes for pgalert's own."""
    return MARKDOWN.sub(r"\\\1", text)


def markdown(text: str, limit: int) -> str:
    """A writer's text escaped in at most `limit` characters: escaping after a cut would double it."""
    return escape_within(text, limit, escape)


@dataclass(frozen=True)
class Teams(OneAtATime):
    webhook_url: str
    name: str = "teams"

    def secrets(self) -> tuple[str, ...]:
        parts = urlsplit(self.webhook_url)
        signatures = parse_qs(parts.query).get("sig", [])
        return tuple(s for s in (self.webhook_url, parts.path, parts.query, *signatures) if len(s) > 1)

    def build(self, delivery: Delivery) -> HttpRequest | None:
        card = build_card(delivery)
        if card is None:
            return None
        return HttpRequest("POST", self.webhook_url, {"Content-Type": "application/json"}, json_body(message(card)))

    def judge(self, delivery: Delivery, response: HttpResponse) -> Verdict:
        return judge_by_status(response)


def message(card: dict) -> dict:
    """The envelope a Workflows webhook takes: a message with one Adaptive Card attachment, cut to 28 KB."""
    document = {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
    while len(json_body(document)) > MESSAGE_MAX_BYTES and len(card["body"]) > 1:
        card["body"].pop()  # the facts and message go before the title line
    return document


def build_card(delivery: Delivery) -> dict | None:
    alert = delivery.alert
    title = markdown(alert["title"], TITLE_MAX)
    ref = f"pgalert alert #{alert['id']}"
    if delivery.action == "trigger":
        return _trigger_card(alert)
    if delivery.action == "acknowledge":
        line = f"👀 Acknowledged by {markdown(who(delivery), NAME_MAX)}{where(delivery)}: {title}"
    elif delivery.action == "resolve":
        verb = "Resolved as a false positive" if delivery.context.get("false_positive") else "Resolved"
        line = f"✅ {verb} by {markdown(who(delivery), NAME_MAX)}{where(delivery)}: {title}"
    elif delivery.action == "notify":
        person = markdown(str(delivery.context.get("person") or delivery.target), NAME_MAX)
        reason = markdown(str(delivery.context.get("reason") or "you are being paged"), REASON_MAX)
        line = f"🚨 {person}, {reason}: {title} ({alert['severity']})"
    else:
        return None
    body = [_text(line, weight="Bolder")]
    note = delivery.context.get("note")
    if note:
        body.append(_text(markdown(str(note), TEXT_MAX), is_subtle=True))
    body.append(_text(ref, is_subtle=True, size="Small"))
    return _card(body)



def _trigger_card(alert: dict) -> dict:
    severity = alert["severity"]
    heading = markdown(f"{alert.get('priority', '')} {alert['title']}".strip(), TITLE_MAX)
    body = [_text(heading, weight="Bolder", size="Medium", color=SEVERITY_COLOR.get(severity, "Default"))]
    facts = [{"title": "Severity", "value": f"{severity} ({alert.get('priority', '')})"},
             {"title": "Type", "value": markdown(alert["alert_type"], 200)}]
    if alert.get("source"):
        facts.append({"title": "Source", "value": markdown(alert["source"], 500)})
    if (alert.get("occurrence_count") or 1) > 1:
        facts.append({"title": "Occurrences", "value": str(alert["occurrence_count"])})
    facts.append({"title": "Alert", "value": f"#{alert['id']} · {markdown(str(alert.get('dedup_key')), 200)}"})
    body.append({"type": "FactSet", "facts": facts})
    if alert.get("message"):
        body.append(_text(markdown(alert["message"], TEXT_MAX)))
    card = _card(body)
    links = [link for link in alert_links(alert) if len(link["href"]) <= URL_MAX][:ACTIONS_MAX]
    if links:
        card["actions"] = [{"type": "Action.OpenUrl", "title": truncate(link["text"], 80), "url": link["href"]}
                           for link in links]
    return card


def _card(body: list[dict]) -> dict:
    return {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": CARD_VERSION, "msteams": {"width": "Full"}, "body": body}


def _text(text: str, **style: object) -> dict:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}
