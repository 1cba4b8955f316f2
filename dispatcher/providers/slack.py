"""Slack incoming webhook: a readable Block Kit message per alert, and follow-ups on acknowledge and resolve.

A Slack post has no idempotency key, so this is the one provider where a retried send can show twice.
Slack takes about one message a second per webhook, so during a storm the dispatcher folds what is waiting
into one digest message (a line per delivery) instead of queueing a message per alert for hours.
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
    escape_within,
    json_body,
    judge_by_status,
    response_text,
    truncate,
    who,
)
from dispatcher.providers.base import where as base_where

SECTION_TEXT_MAX = 3000
HEADER_TEXT_MAX = 150
FALLBACK_TEXT_MAX = 4000
BLOCKS_MAX = 50
BUTTONS_MAX = 5
# a writer's parts of a one-line message, escaped: together they leave the rest of a section to the note
TITLE_MAX, NAME_MAX, REASON_MAX = 1500, 200, 600
SEVERITY_MARK = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
DIGEST_MAX = 100  # deliveries in one digest: a line each, well inside Slack's 50 blocks of 3,000 characters
DIGEST_LINE_MAX = 280
ACTION_MARK = {"trigger": "", "acknowledge": ":eyes: acknowledged", "resolve": ":white_check_mark: resolved",
               "notify": ":rotating_light: paging"}


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters: escaped, a writer's <!channel>, <@U...> or
    <https://x|label> is shown as typed, never a mention or a disguised link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(text: str, limit: int) -> str:
    """A writer's text escaped in at most `limit` characters, never cut inside an `&amp;`."""
    return escape_within(text, limit, escape)


@dataclass(frozen=True)
class Slack:
    webhook_url: str
    name: str = "slack"
    digest_max: int = DIGEST_MAX
    interactive: bool = False  # Acknowledge and Resolve buttons, answered by `pgalert serve` (SLACK_SIGNING_SECRET)

    def secrets(self) -> tuple[str, ...]:
        parts = urlsplit(self.webhook_url)
        # requests' errors quote the path alone; it carries the webhook's secret too
        return tuple(s for s in (self.webhook_url, parts.path, parts.query) if len(s) > 1)

    def build(self, delivery: Delivery) -> HttpRequest | None:
        message = build_message(delivery, self.interactive)
        if message is None:
            return None
        return HttpRequest("POST", self.webhook_url, {"Content-Type": "application/json"}, json_body(message))

    def build_digest(self, deliveries: list[Delivery]) -> HttpRequest:
        return HttpRequest("POST", self.webhook_url, {"Content-Type": "application/json"},
                           json_body(build_digest(deliveries)))

    def judge(self, delivery: Delivery, response: HttpResponse) -> Verdict:
        verdict = judge_by_status(response)
        if verdict.outcome == "succeeded" and response.body.strip() not in (b"ok", b""):
            return Verdict("failed", f"HTTP {response.status}: unexpected reply {response_text(response)}")
        return verdict


def build_message(delivery: Delivery, interactive: bool = False) -> dict | None:
    alert = delivery.alert
    title = mrkdwn(alert["title"], TITLE_MAX)
    ref = f"alert #{alert['id']}"
    if delivery.action == "trigger":
        message = _trigger_message(alert)
        if interactive:
            message["blocks"].insert(-1, lifecycle_buttons(delivery.provider_key))
        return message
    if delivery.action == "acknowledge":
        text = f":eyes: *Acknowledged* by {mrkdwn(who(delivery), NAME_MAX)}{where(delivery)}: {title} ({ref})"
    elif delivery.action == "resolve":
        verb = "Resolved as a false positive" if delivery.context.get("false_positive") else "Resolved"
        text = f":white_check_mark: *{verb}* by {mrkdwn(who(delivery), NAME_MAX)}{where(delivery)}: {title} ({ref})"
    elif delivery.action == "notify":
        person = delivery.context.get("slack_member_id")
        mention = f"<@{person}>" if person else mrkdwn(str(delivery.context.get("person") or delivery.target), NAME_MAX)
        reason = mrkdwn(str(delivery.context.get("reason") or "you are being paged"), REASON_MAX)
        text = f":rotating_light: {mention} {reason}: {title} ({ref}, {alert['severity']})"
    else:
        return None
    note = delivery.context.get("note")
    if note:
        text += f"\n>{mrkdwn(str(note), SECTION_TEXT_MAX - len(text) - 2)}"
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def where(delivery: Delivery) -> str:
    """" in PagerDuty" when a responder acted there, escaped for mrkdwn; nothing for SQL."""
    return mrkdwn(base_where(delivery), NAME_MAX)


def lifecycle_buttons(provider_key: str) -> dict:
    """Acknowledge and Resolve, answered by `pgalert serve` at /v1/slack/actions. The value is the key pgalert
    gives the alert at every provider, so a click on another installation's message names no alert here."""
    return {
        "type": "actions",
        "block_id": "pgalert_lifecycle",
        "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Acknowledge"}, "style": "primary",
             "action_id": "pgalert_acknowledge", "value": provider_key},
            {"type": "button", "text": {"type": "plain_text", "text": "Resolve"},
             "action_id": "pgalert_resolve", "value": provider_key},
        ],
    }


def _trigger_message(alert: dict) -> dict:
    mark = SEVERITY_MARK.get(alert["severity"], "")
    header = truncate(f"{alert.get('priority', '')} {alert['title']}".strip(), HEADER_TEXT_MAX)
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}]
    if alert.get("message"):
        text = mrkdwn(alert["message"], SECTION_TEXT_MAX)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    facts = [
        f"*Severity*\n{mark} {alert['severity']} ({alert.get('priority', '')})",
        f"*Type*\n`{mrkdwn(alert['alert_type'], 200)}`",
    ]
    if alert.get("source"):
        facts.append(f"*Source*\n{mrkdwn(alert['source'], 500)}")
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
    dedup = mrkdwn(str(alert.get("dedup_key")), 200)
    blocks.append({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": f"pgalert alert #{alert['id']} · dedup `{dedup}`"}],
    })
    # the notification's text: as live as the blocks, so a writer's <!channel> or <https://x|label> is escaped here too
    fallback = f"{mark} [{alert['severity']}] {mrkdwn(alert['title'], TITLE_MAX)}: "
    fallback += mrkdwn(alert.get("message") or "", FALLBACK_TEXT_MAX - len(fallback))
    return {"text": fallback, "blocks": blocks[:BLOCKS_MAX]}


def build_digest(deliveries: list[Delivery]) -> dict:
    """One message for many deliveries: a header that counts them by severity, then a line per delivery."""
    if not 0 < len(deliveries) <= DIGEST_MAX:
        raise ValueError(f"a digest holds 1 to {DIGEST_MAX} deliveries, not {len(deliveries)}")
    counts: dict[str, int] = {}
    for delivery in deliveries:
        counts[delivery.alert["severity"]] = counts.get(delivery.alert["severity"], 0) + 1
    summary = ", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=lambda s: (list(SEVERITY_MARK) + [s]).index(s)))
    header = truncate(f"{len(deliveries)} alert updates ({summary})", HEADER_TEXT_MAX)
    sections: list[str] = []
    for delivery in deliveries:
        line = _digest_line(delivery)
        if sections and len(sections[-1]) + 1 + len(line) <= SECTION_TEXT_MAX:
            sections[-1] += "\n" + line
        else:
            sections.append(line)
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in sections]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
        "pgalert sent these together because Slack takes about one message a second")}]})
    return {"text": truncate(header, FALLBACK_TEXT_MAX), "blocks": blocks[:BLOCKS_MAX]}


def _digest_line(delivery: Delivery) -> str:
    alert = delivery.alert
    mark = SEVERITY_MARK.get(alert["severity"], "")
    action = ACTION_MARK.get(delivery.action, delivery.action)
    if delivery.action in ("acknowledge", "resolve"):
        action += f" by {mrkdwn(who(delivery), NAME_MAX)}"
    elif delivery.action == "notify":
        person = delivery.context.get("slack_member_id")
        action += " " + (f"<@{person}>" if person else mrkdwn(str(delivery.context.get("person") or delivery.target),
                                                             NAME_MAX))
    kind = f"`{mrkdwn(alert['alert_type'], 60)}`"
    prefix = " ".join(p for p in (mark, f"#{alert['id']}", action, kind) if p)
    # the title goes last and alone is shortened, so the id and type always show
    return f"{prefix} *{mrkdwn(alert['title'], max(DIGEST_LINE_MAX - len(prefix) - 3, 20))}*"
