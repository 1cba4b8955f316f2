"""ntfy: a push notification to a person's verified topic (sql/paging.sql), on the channel's own server.

Published as JSON to the server's root (ntfy's "publish as JSON": topic, title, message, priority 1-5, tags),
with an access token when the server needs one. The topic comes from the contact method, the server from the
channel: a token never goes to a host an admin typed into a person's address. ntfy answers 200 with the
message's id; 429 (its visitor limits) and 5xx are worth retrying.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dispatcher.inbound.verify import action_token
from dispatcher.providers.base import (
    Delivery,
    HttpRequest,
    HttpResponse,
    OneAtATime,
    Verdict,
    json_body,
    judge_by_status,
    parse_json,
    truncate,
    truncate_utf8,
)

PUBLIC_SERVER = "https://ntfy.sh"
ACTION_HOURS = 24
MESSAGE_MAX_BYTES = 4096  # ntfy's default message size limit; larger bodies become attachments
TITLE_MAX = 250
# 5 is "max/urgent": a long vibration burst and a pop-over that breaks through on most phones
PRIORITY = {"critical": 5, "warning": 4, "info": 3}


@dataclass(frozen=True)
class Ntfy(OneAtATime):
    server_url: str = PUBLIC_SERVER
    token: str = ""
    # with `pgalert serve`'s public URL and the action key it shares, a page carries an Acknowledge button: a
    # signed link, valid ACTION_HOURS, that acknowledges that one alert once
    public_url: str = ""
    action_key: str = ""
    name: str = "ntfy"
    clock: Callable[[], float] = field(default=time.time, compare=False, repr=False)

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.token, self.action_key) if s)

    def build(self, delivery: Delivery) -> HttpRequest | None:
        contact = delivery.context.get("contact") or {}
        topic = str(contact.get("address") or "")
        if delivery.action != "notify" or contact.get("kind") != "push" or not topic:
            return None
        alert = delivery.alert
        own = str(alert.get("alert_type") or "").startswith("pgalert_") and alert.get("status") == "resolved"
        # someone else took the alert (sql/paging.sql): the person is told, at ntfy's default priority, not woken
        status = str(delivery.target).startswith("status:")
        reason = str(delivery.context.get("reason") or "")
        message = reason if own or status else "\n".join(part for part in (
            str(alert.get("message") or ""), reason, f"Alert {alert.get('id')}") if part)
        document = {
            "topic": topic,
            "title": truncate(str(alert.get("title") or "pgalert"), TITLE_MAX),
            "message": truncate_utf8(message or "pgalert", MESSAGE_MAX_BYTES - 512),
            "priority": 3 if status else 4 if own else PRIORITY.get(str(alert.get("severity")), 5),
            "tags": ["white_check_mark"] if status else ["pgalert"] if own
            else ["rotating_light", str(alert.get("severity") or "alert")],
        }
        if self.public_url and self.action_key and str(delivery.target).startswith("page:") and not own:
            token = action_token(self.action_key, delivery.delivery_id, int(self.clock()) + ACTION_HOURS * 3600)
            document["actions"] = [{"action": "http", "label": "Acknowledge", "method": "POST", "clear": True,
                                    "url": f"{self.public_url.rstrip('/')}/v1/ntfy/ack/{token}"}]
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return HttpRequest("POST", self.server_url.rstrip("/") + "/", headers, json_body(document))

    def judge(self, delivery: Delivery, response: HttpResponse) -> Verdict:
        verdict = judge_by_status(response)
        if verdict.outcome == "succeeded":
            return Verdict("succeeded", reference=str(parse_json(response.body).get("id") or "") or None)
        return verdict
