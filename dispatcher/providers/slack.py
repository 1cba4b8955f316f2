"""Slack incoming webhook: a readable Block Kit message per alert, and follow-ups on acknowledge and resolve.

A Slack post has no idempotency key, so this is the one provider where a retried send can show twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from dispatcher.providers.base import (
    Delivery,
    HttpRequest,
    HttpResponse,
    Verdict,
    alert_links,
    json_body,
    judge_by_status,
    response_text,
    truncate,
    who,
)

SECTION_TEXT_MAX = 3000
HEADER_TEXT_MAX = 150
FALLBACK_TEXT_MAX = 4000
BLOCKS_MAX = 50
BUTTONS_MAX = 5
SEVERITY_MARK = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class Slack:
    webhook_url: str
    name: str = "slack"

    def secrets(self) -> tuple[str, ...]:
        parts = urlsplit(self.webhook_url)
        # requests' errors quote the path alone; it carries the webhook's secret too
        return tuple(s for s in (self.webhook_url, parts.path, parts.query) if len(s) > 1)

    def build(self, delivery: Delivery) -> HttpRequest | None:
        message = build_message(delivery)
        if message is None:
            return None
        return HttpRequest("POST", self.webhook_url, {"Content-Type": "application/json"}, json_body(message))

    def judge(self, delivery: Delivery, response: HttpResponse) -> Verdict:
        verdict = judge_by_status(response)
        if verdict.outcome == "succeeded" and response.body.strip() not in (b"ok", b""):
            return Verdict("failed", f"HTTP {response.status}: unexpected reply {response_text(response)}")
        return verdict


def build_message(delivery: Delivery) -> dict | None:
    alert = delivery.alert
    title = escape(alert["title"])
    ref = f"alert #{alert['id']}"
    if delivery.action == "trigger":
        return _trigger_message(alert)
    if delivery.action == "acknowledge":
        text = f":eyes: *Acknowledged* by {escape(who(delivery))}: {title} ({ref})"
    elif delivery.action == "resolve":
        verb = "Resolved as a false positive" if delivery.context.get("false_positive") else "Resolved"
        text = f":white_check_mark: *{verb}* by {escape(who(delivery))}: {title} ({ref})"
    elif delivery.action == "notify":
        person = delivery.context.get("slack_member_id")
        mention = f"<@{person}>" if person else escape(str(delivery.context.get("person") or delivery.target))
        reason = escape(str(delivery.context.get("reason") or "you are being paged"))
        text = f":rotating_light: {mention} {reason}: {title} ({ref}, {alert['severity']})"
    else:
        return None
    note = delivery.context.get("note")
    if note:
        text += f"\n>{escape(str(note))}"
    text = truncate(text, SECTION_TEXT_MAX)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def _trigger_message(alert: dict) -> dict:
    mark = SEVERITY_MARK.get(alert["severity"], "")
    header = truncate(f"{alert.get('priority', '')} {alert['title']}".strip(), HEADER_TEXT_MAX)
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}]
    if alert.get("message"):
        text = truncate(escape(alert["message"]), SECTION_TEXT_MAX)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    facts = [
        f"*Severity*\n{mark} {alert['severity']} ({alert.get('priority', '')})",
        f"*Type*\n`{truncate(escape(alert['alert_type']), 200)}`",
    ]
    if alert.get("source"):
        facts.append(f"*Source*\n{truncate(escape(alert['source']), 500)}")
    if (alert.get("occurrence_count") or 1) > 1:
        facts.append(f"*Occurrences*\n{alert['occurrence_count']}")
    blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in facts]})
    links = alert_links(alert)[:BUTTONS_MAX]
    if links:
        blocks.append({
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": truncate(link["text"], 75)},
                    "url": link["href"][:3000],
                }
                for link in links
            ],
        })
    dedup = truncate(escape(str(alert.get("dedup_key"))), 200)
    blocks.append({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"pgalert alert #{alert['id']} · dedup `{dedup}`"}],
    })
    fallback = f"{mark} [{alert['severity']}] {alert['title']}: {alert.get('message') or ''}"
    fallback = truncate(fallback, FALLBACK_TEXT_MAX)
    return {"text": fallback, "blocks": blocks[:BLOCKS_MAX]}
