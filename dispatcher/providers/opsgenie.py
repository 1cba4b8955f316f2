"""Opsgenie Alert API: create with an alias, acknowledge and close by that alias.

Opsgenie's REST API ends on 2027-04-05; this module is kept small so its successor can sit beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from dispatcher.providers.base import (
    Delivery,
    HttpRequest,
    HttpResponse,
    OneAtATime,
    Verdict,
    details_of,
    json_body,
    judge_by_status,
    parse_json,
    truncate,
    who,
)

US_API_URL = "https://api.opsgenie.com"
EU_API_URL = "https://api.eu.opsgenie.com"
MESSAGE_MAX = 130
ALIAS_MAX = 512
DESCRIPTION_MAX = 15000
ENTITY_MAX = 512
TAGS_MAX, TAG_MAX = 20, 50
NOTE_MAX = 25000
DETAILS_MAX = 8000  # characters of the whole details map, keys included
PRIORITY = {"critical": "P1", "warning": "P2", "info": "P3"}


@dataclass(frozen=True)
class Opsgenie(OneAtATime):
    api_key: str
    api_url: str = US_API_URL
    name: str = "opsgenie"

    def secrets(self) -> tuple[str, ...]:
        return (self.api_key,)

    def build(self, delivery: Delivery) -> HttpRequest | None:
        alias = truncate(delivery.provider_key, ALIAS_MAX, "")
        base = self.api_url.rstrip("/") + "/v2/alerts"
        if delivery.action == "trigger":
            return self._post(base, _create_body(delivery, alias))
        verb = {"acknowledge": "acknowledge", "resolve": "close"}.get(delivery.action)
        if verb is None:
            return None
        body = {"user": truncate(who(delivery), 100), "source": "pgalert"}
        if delivery.context.get("note"):
            body["note"] = truncate(str(delivery.context["note"]), NOTE_MAX)
        return self._post(f"{base}/{quote(alias, safe='')}/{verb}?identifierType=alias", body)

    def _post(self, url: str, body: dict) -> HttpRequest:
        headers = {"Content-Type": "application/json", "Authorization": f"GenieKey {self.api_key}"}
        return HttpRequest("POST", url, headers, json_body(body))

    def judge(self, delivery: Delivery, response: HttpResponse) -> Verdict:
        verdict = judge_by_status(response)
        if verdict.outcome == "succeeded":
            return Verdict("succeeded", reference=parse_json(response.body).get("requestId"))
        return verdict


def _create_body(delivery: Delivery, alias: str) -> dict:
    alert = delivery.alert
    tags = [alert["alert_type"], alert["severity"], alert.get("priority") or ""]
    details = {
        "alert_id": str(alert["id"]),
        "alert_type": truncate(alert["alert_type"], 1000),
        "dedup_key": truncate(str(alert.get("dedup_key")), 1000),
        "occurrences": str(alert.get("occurrence_count")),
    }
    budget = DETAILS_MAX - sum(len(k) + len(v) for k, v in details.items())
    for key, value in details_of(alert).items():
        key, value = truncate(str(key), 100), truncate(str(value), 1000)
        if key in details or len(key) + len(value) > budget:
            continue
        details[key] = value
        budget -= len(key) + len(value)
    body = {
        "message": truncate(alert["title"], MESSAGE_MAX),
        "alias": alias,
        "description": truncate(alert.get("message") or alert["title"], DESCRIPTION_MAX),
        "priority": PRIORITY[alert["severity"]],
        "tags": [truncate(t, TAG_MAX) for t in tags if t][:TAGS_MAX],
        "details": details,
        "source": "pgalert",
    }
    if alert.get("source"):
        body["entity"] = truncate(alert["source"], ENTITY_MAX)
    return body
