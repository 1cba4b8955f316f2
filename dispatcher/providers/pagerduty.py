"""PagerDuty Events API v2: trigger, acknowledge and resolve with one stable dedup_key per alert."""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.providers.base import (
    Delivery,
    HttpRequest,
    HttpResponse,
    OneAtATime,
    Verdict,
    alert_links,
    details_of,
    json_body,
    judge_by_status,
    parse_json,
    truncate,
    truncate_utf8,
)

US_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
EU_EVENTS_URL = "https://events.eu.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
EVENT_MAX_BYTES = 512 * 1024
SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}
ACTIONS = {"trigger": "trigger", "acknowledge": "acknowledge", "resolve": "resolve"}


@dataclass(frozen=True)
class PagerDuty(OneAtATime):
    routing_key: str
    events_url: str = US_EVENTS_URL
    name: str = "pagerduty"

    def secrets(self) -> tuple[str, ...]:
        return (self.routing_key,)

    def build(self, delivery: Delivery) -> HttpRequest | None:
        action = ACTIONS.get(delivery.action)
        if action is None:
            return None
        event: dict = {
            "routing_key": self.routing_key,
            "event_action": action,
            "dedup_key": truncate(delivery.provider_key, DEDUP_KEY_MAX, ""),
        }
        if action == "trigger":
            event.update(self._trigger_fields(delivery))
        return HttpRequest("POST", self.events_url, {"Content-Type": "application/json"}, _fit(event))

    @staticmethod
    def _trigger_fields(delivery: Delivery) -> dict:
        alert = delivery.alert
        summary = alert["title"] if not alert.get("message") else f"{alert['title']}: {alert['message']}"
        fields = {
            "payload": {
                "summary": truncate(summary, SUMMARY_MAX),
                "source": truncate(alert.get("source") or "pgalert", 255),
                "severity": SEVERITY[alert["severity"]],
                "timestamp": alert.get("occurred_at"),
                "class": alert["alert_type"],
                "custom_details": {
                    "alert_id": alert["id"],
                    "message": alert.get("message") or "",
                    "priority": alert.get("priority"),
                    "dedup_key": alert.get("dedup_key"),
                    "occurrences": alert.get("occurrence_count"),
                    "details": details_of(alert),
                },
            },
            "client": "pgalert",
        }
        links = alert_links(alert)
        if links:
            fields["links"] = links
        return fields

    def judge(self, delivery: Delivery, response: HttpResponse) -> Verdict:
        verdict = judge_by_status(response)
        if verdict.outcome == "succeeded":
            reply = parse_json(response.body)
            return Verdict("succeeded", reference=str(reply.get("dedup_key") or delivery.provider_key))
        return verdict


def _fit(event: dict) -> bytes:
    """Keep the whole event under PagerDuty's 512 KB by shrinking custom details, the only unbounded part."""
    body = json_body(event)
    if len(body) <= EVENT_MAX_BYTES:
        return body
    custom = event["payload"]["custom_details"]
    custom["details"] = {"truncated": truncate_utf8(json_body(custom["details"]).decode(), 256 * 1024)}
    custom["message"] = truncate_utf8(custom["message"], 128 * 1024)
    return json_body(event)
