"""The OpenAPI description of `pgalert serve`, served at /openapi.json: the generic API in full, the
provider endpoints by what they accept (their payloads are the vendors' own)."""

from __future__ import annotations

from dispatcher import __version__

ALERT = {
    "type": "object",
    "required": ["alert_type"],
    "properties": {
        "status": {"type": "string", "enum": ["firing", "resolved"], "default": "firing",
                   "description": "firing raises (deduplicated by dedup_key); resolved resolves the open alert of "
                                  "dedup_key, if this client raised it."},
        "alert_type": {"type": "string", "maxLength": 200, "examples": ["payment_failure"]},
        "severity": {"type": "string", "enum": ["critical", "warning", "info", "P0", "P1", "P2"],
                     "description": "Required when firing. critical pages (PagerDuty), warning goes to Opsgenie, "
                                    "info to Slack, as monitoring_routes say."},
        "title": {"type": "string", "maxLength": 1024, "description": "Required when firing."},
        "message": {"type": "string", "maxLength": 20000},
        "source": {"type": "string", "maxLength": 500},
        "dedup_key": {"type": "string", "maxLength": 500,
                      "description": "Alerts with one key while one is open are one alert. Default: alert_type, or "
                                     "alert_type:source."},
        "details": {"type": "object", "description": "Any JSON object up to 64 KiB; runbook_url and links "
                                                     "([{href, text}]) become links at every provider."},
        "occurred_at": {"type": "string", "format": "date-time", "description": "When the problem started "
                                                                                "(MTTD counts from here)."},
        "resolved_at": {"type": "string", "format": "date-time", "description": "When it ended (resolved only)."},
        "note": {"type": "string", "description": "Why it was resolved (resolved only)."},
    },
}
RESULTS = {
    "type": "object",
    "properties": {"results": {"type": "array", "items": {"type": "object", "properties": {
        "index": {"type": "integer"},
        "outcome": {"type": "string", "enum": ["opened", "deduplicated", "repeat", "resolved", "already_resolved",
                                               "unknown", "not_raised_by_client", "rejected"]},
        "alert_id": {"type": ["integer", "null"]},
        "error": {"type": "string"},
    }}}},
}
ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}


def _answers(ok: dict, *codes: int) -> dict:
    reasons = {400: "The body is not what this endpoint takes; error says why.",
               401: "Not authenticated (token or signature); nothing was written.",
               404: "This endpoint is not configured on this server.",
               408: "The body did not arrive in time; nothing was written.",
               413: "The body is over the configured size.",
               422: "Every alert in the request was rejected; each result says why.",
               503: "The database is unavailable; retry (Retry-After)."}
    answers = {"200": ok}
    for code in codes:
        schema = "Results" if code == 422 else "Error"  # a 422 is the results, every one of them rejected
        answers[str(code)] = {"description": reasons[code],
                              "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}
    return answers


def _provider(summary: str, description: str, security: list[dict], media: str = "application/json") -> dict:
    return {"post": {
        "summary": summary, "description": description, "security": security,
        "requestBody": {"required": True, "content": {media: {"schema": {"type": "object"}}}},
        "responses": _answers({"description": "Handled: outcome says what changed (acknowledged, resolved, "
                                              "reopened, already_<status>, unknown_alert, not_sent_there, "
                                              "duplicate, ignored)."},
                              400, 401, 404, 408, 413, 503),
    }}


def openapi_document(max_body_bytes: int) -> dict:
    results = {"description": "One result per alert, in order.",
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Results"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "pgalert serve", "version": __version__,
                 "description": f"Raise and resolve alerts over HTTP, and hear what responders did at PagerDuty, "
                                f"Opsgenie and Slack. Bodies over {max_body_bytes} bytes are refused (413)."},
        "paths": {
            "/v1/alerts": {"post": {
                "summary": "Raise or resolve alerts",
                "description": "One alert object, or an array of up to 1000. Goes through the same deduplication "
                               "and routing as an INSERT into monitoring_alerts. The token is checked before the "
                               "body is read; an alert that cannot be stored is rejected alone.",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    {"$ref": "#/components/schemas/Alert"},
                    {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}, "maxItems": 1000}]}}}},
                "responses": _answers(results, 400, 401, 408, 413, 422, 503),
            }},
            "/v1/alertmanager": {"post": {
                "summary": "Prometheus Alertmanager / Grafana webhook (payload version 4)",
                "description": "Each alert is raised or resolved by its fingerprint; severity from the severity "
                               "label; repeats of a firing alert change nothing.",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": _answers(results, 400, 401, 408, 413, 422, 503),
            }},
            "/v1/pagerduty": _provider("PagerDuty webhooks v3", "Signed with X-PagerDuty-Signature (v1=, "
                                       "HMAC-SHA256); a repeat of a signed event id acts once.",
                                       [{"pagerdutySignature": []}]),
            "/v1/opsgenie": _provider("Opsgenie outgoing webhook", "Acknowledge, Close and UnAcknowledge by the "
                                      "alias pgalert gave.", [{"bearer": []}, {"basic": []}, {"tokenQuery": []}]),
            "/v1/slack/actions": _provider("Slack interactivity (Acknowledge and Resolve buttons)",
                                           "Signed with X-Slack-Signature v0; 5-minute replay window.",
                                           [{"slackSignature": []}], "application/x-www-form-urlencoded"),
            "/healthz": {"get": {"summary": "200 when the database answers and pgalert is installed, else 503",
                                 "responses": {"200": {"description": "ok"}, "503": {"description": "not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}},
        },
        "components": {
            "schemas": {"Alert": ALERT, "Results": RESULTS, "Error": ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A token from `pgalert api-client create NAME`."},
                "basic": {"type": "http", "scheme": "basic", "description": "The Opsgenie token as the password."},
                "tokenQuery": {"type": "apiKey", "in": "query", "name": "token"},
                "pagerdutySignature": {"type": "apiKey", "in": "header", "name": "X-PagerDuty-Signature"},
                "slackSignature": {"type": "apiKey", "in": "header", "name": "X-Slack-Signature"},
            },
        },
    }
