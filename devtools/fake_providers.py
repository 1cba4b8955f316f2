"""Local stand-ins for PagerDuty, Opsgenie, Jira Service Management, Slack, Sentry, a signed webhook, Twilio and
ntfy, on one loopback HTTP server.

They answer as the vendors document (../shared/specs at the time of writing): the same status codes, bodies
and limits, so the dispatcher is tested against the contract rather than against itself. Tests script faults
(500, 429 with Retry-After, slow replies, dropped connections, garbage) per provider; the demo prints what each
provider would have received.

    python -m devtools.fake_providers --port 8089      # print every request, like the demo does
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dispatcher.providers.webhook import verify

PAGERDUTY_KEY = "0123456789abcdef0123456789abcdef"
PAGERDUTY_KEY_PAYMENTS = "fedcba9876543210fedcba9876543210"  # a second PagerDuty service (an integration key each)
OPSGENIE_KEY = "ffffffff-0000-4000-8000-000000000001"
JSM_KEY = "eeeeeeee-0000-4000-8000-000000000002"
SLACK_PATH = "/slack/services/T0000000/B0000000/XXXXXXXXXXXXXXXXXXXXXXXX"
SLACK_PATH_PAYMENTS = "/slack/services/T0000000/B000PAY00/YYYYYYYYYYYYYYYYYYYYYYYY"  # a second channel's webhook
SENTRY_KEY = "abcdef0123456789abcdef0123456789"
# a Teams Workflows webhook: the flow's invoke URL, which carries its own signature
TEAMS_PATH = "/teams/workflows/5e1f0c2a9b3d4e6f8a7b6c5d4e3f2a1b/triggers/manual/paths/invoke"
TEAMS_SIG = "Xq3v9Lr2Kp8Zt5Nw1Yb7Hc4Md6Fs0Gj"
TEAMS_MESSAGE_MAX = 28 * 1024
SENTRY_PROJECT = "42"
WEBHOOK_SECRET = "whsec_local_test_secret"
PAGERDUTY_API_TOKEN = "y_NbAkKc66ryYTWUXYEu"  # a read-only REST API key, for `pgalert serve`'s incident lookups
TWILIO_ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TWILIO_AUTH_TOKEN = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
TWILIO_FROM_NUMBER = "+15005550006"  # Twilio's magic "from" number for test credentials: always valid
# Twilio's magic "to" numbers for test credentials (its Test Credentials page) and the errors they give
TWILIO_MAGIC_TO = {"+15005550001": (21211, "The 'To' number +15005550001 is not a valid phone number."),
                   "+15005550009": (21614, "The 'To' number +15005550009 is not a valid mobile number."),
                   "+15005550004": (21610, "Attempt to send to unsubscribed recipient")}
NTFY_TOKEN = "tk_pgalerttestsntfytoken000000"


@dataclass(frozen=True)
class Fault:
    """A scripted reply: status/body/headers, or `hang` seconds before answering, or `drop` the connection
    before any reply, or `cut` it after the headers and half the body."""

    status: int = 500
    body: bytes = b'{"status":"error","message":"Internal Server Error"}'
    headers: tuple[tuple[str, str], ...] = ()
    hang: float = 0.0
    drop: bool = False
    cut: bool = False


@dataclass
class Received:
    provider: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int
    at: float  # time.perf_counter() of arrival, comparable within this process

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeProviders:
    host: str = "127.0.0.1"
    port: int = 0
    on_request: Callable[[Received], None] | None = None
    slack_rate_per_second: float | None = None  # enforce Slack's ~1/s with 429s when set
    received: list[Received] = field(default_factory=list)
    _faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _slack_last: float = 0.0
    incidents: dict[str, str] = field(default_factory=dict)  # PagerDuty incident id -> the dedup_key that opened it
    twilio_resources: dict[str, dict] = field(default_factory=dict)  # a message's or call's sid -> its resource

    # ---- control ------------------------------------------------------------------------------------------

    def start(self) -> FakeProviders:
        handler = _handler_for(self)
        self.server = _Server((self.host, self.port), handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="fake-providers", daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """The dispatcher environment that points every provider here."""
        return {
            "PAGERDUTY_INTEGRATION_KEY": PAGERDUTY_KEY,
            "PAGERDUTY_EVENTS_URL": f"{self.base_url}/pagerduty/v2/enqueue",
            "OPSGENIE_API_KEY": OPSGENIE_KEY,
            "OPSGENIE_API_URL": f"{self.base_url}/opsgenie",
            "JSM_API_KEY": JSM_KEY,
            "JSM_API_URL": f"{self.base_url}/jsm/jsm/ops/integration",
            "SLACK_WEBHOOK_URL": f"{self.base_url}{SLACK_PATH}",
            "TEAMS_WEBHOOK_URL": (f"{self.base_url}{TEAMS_PATH}?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun"
                                  f"&sv=1.0&sig={TEAMS_SIG}"),
            "SENTRY_DSN": f"http://{SENTRY_KEY}@{self.host}:{self.port}/sentry/{SENTRY_PROJECT}",
            "PGALERT_WEBHOOK_URL": f"{self.base_url}/webhook",
            "PGALERT_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "TWILIO_ACCOUNT_SID": TWILIO_ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "TWILIO_FROM_NUMBER": TWILIO_FROM_NUMBER,
            "TWILIO_API_URL": f"{self.base_url}/twilio",
            "NTFY_SERVER_URL": f"{self.base_url}/ntfy",
            "NTFY_TOKEN": NTFY_TOKEN,
        }

    def script(self, provider: str, *faults: Fault) -> None:
        """The next requests to `provider` get these replies, in order; later ones are answered normally."""
        with self._cond:
            self._faults[provider].extend(faults)

    def requests_for(self, provider: str, status: int | None = None) -> list[Received]:
        with self._cond:
            return [r for r in self.received if r.provider == provider and (status is None or r.status == status)]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.received):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"fake providers: condition not met in {timeout}s; got "
                                       f"{[(r.provider, r.status) for r in self.received]}")
                self._cond.wait(remaining)
            return list(self.received)

    def incident_id(self, dedup_key: str) -> str | None:
        """The id of the incident PagerDuty opened for a dedup_key (as its web app and webhooks show it)."""
        with self._cond:
            return next((i for i, key in self.incidents.items() if key == dedup_key), None)

    def twilio_said(self, sid: str, status: str, error_code: int | None = None) -> None:
        """What became of a message or call, as a fetch of it (GET .../Messages/{sid}.json) then says."""
        with self._cond:
            self.twilio_resources[sid].update(status=status, error_code=error_code)

    def _record(self, received: Received) -> None:
        with self._cond:
            if received.provider == "pagerduty" and received.status == 202:
                event = json.loads(received.body)
                if event.get("event_action") == "trigger":
                    incident = "Q" + hashlib.sha1(event["dedup_key"].encode()).hexdigest()[:12].upper()
                    self.incidents[incident] = event["dedup_key"]
            self.received.append(received)
            self._cond.notify_all()
        if self.on_request:
            self.on_request(received)

    def _next_fault(self, provider: str) -> Fault | None:
        with self._cond:
            queue = self._faults.get(provider)
            return queue.popleft() if queue else None


# ---- the vendors' contracts ---------------------------------------------------------------------------------

Reply = tuple[int, dict[str, str], bytes]


def _json(status: int, document: Any, **headers: str) -> Reply:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(document).encode()


def pagerduty(path: str, query: dict, headers: dict, body: bytes) -> Reply:
    if path != "/v2/enqueue":
        return _json(404, {"status": "Not Found", "message": "Not Found"})
    if len(body) > 512 * 1024:
        return _json(413, {"status": "Request Entity Too Large", "message": "Request too large"})
    try:
        event = json.loads(body)
    except ValueError:
        return _json(400, {"status": "Unrecognized object", "message": "Event object format is unrecognized",
                           "errors": ["JSON parse error"]})
    errors = []
    if event.get("routing_key") not in (PAGERDUTY_KEY, PAGERDUTY_KEY_PAYMENTS):
        errors.append("'routing_key' is invalid")
    if event.get("event_action") not in ("trigger", "acknowledge", "resolve"):
        errors.append("'event_action' is invalid")
    dedup_key = event.get("dedup_key")
    if dedup_key is not None and len(dedup_key) > 255:
        errors.append("'dedup_key' must be at most 255 characters")
    if event.get("event_action") == "trigger":
        payload = event.get("payload") or {}
        for name in ("summary", "source", "severity"):
            if not payload.get(name):
                errors.append(f"'payload.{name}' is missing or blank")
        if len(payload.get("summary") or "") > 1024:
            errors.append("'payload.summary' must be at most 1024 characters")
        if payload.get("severity") not in (None, "critical", "warning", "error", "info"):
            errors.append("'payload.severity' is invalid")
    elif not dedup_key:
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if errors:
        return _json(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})
    return _json(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key or uuid.uuid4().hex})


def opsgenie(path: str, query: dict, headers: dict, body: bytes, key: str = OPSGENIE_KEY) -> Reply:
    request_id = str(uuid.uuid4())
    if headers.get("authorization") != f"GenieKey {key}":
        return _json(401, {"message": "Could not authenticate", "took": 0.001, "requestId": request_id})
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        return _json(400, {"message": "Invalid JSON", "took": 0.001, "requestId": request_id})
    accepted = _json(202, {"result": "Request will be processed", "took": 0.01, "requestId": request_id})
    if path == "/v2/alerts":
        errors = {}
        if not document.get("message"):
            errors["message"] = "Message can not be empty."
        limits = {"message": 130, "alias": 512, "description": 15000, "entity": 512}
        for name, limit in limits.items():
            if len(document.get(name) or "") > limit:
                errors[name] = f"{name} can not be longer than {limit} characters."
        tags = document.get("tags") or []
        if len(tags) > 20 or any(len(t) > 50 for t in tags):
            errors["tags"] = "at most 20 tags of 50 characters"
        if document.get("priority", "P3") not in ("P1", "P2", "P3", "P4", "P5"):
            errors["priority"] = "Priority should be one of [P1, P2, P3, P4, P5]"
        if errors:
            return _json(422, {"message": "Request body is not processable. Please check the errors.",
                               "errors": errors, "took": 0.001, "requestId": request_id})
        return accepted
    match = re.fullmatch(r"/v2/alerts/([^/]+)/(acknowledge|close)", path)
    if match:
        if query.get("identifierType", ["id"])[0] not in ("id", "alias", "tiny"):
            return _json(422, {"message": "identifierType is invalid", "took": 0.001, "requestId": request_id})
        return accepted
    return _json(404, {"message": "Not found", "took": 0.001, "requestId": request_id})


def jsm(path: str, query: dict, headers: dict, body: bytes) -> Reply:
    """Jira Service Management Operations' integration API (base .../jsm/ops/integration): Opsgenie's alert
    contract (../shared/specs/inbound.md), with the integration's own key."""
    if not path.startswith("/jsm/ops/integration/"):
        return _json(404, {"message": "Not found"})
    return opsgenie(path.removeprefix("/jsm/ops/integration"), query, headers, body, key=JSM_KEY)


def slack(path: str, query: dict, headers: dict, body: bytes) -> Reply:
    text = {"Content-Type": "text/plain"}
    if path not in (SLACK_PATH.removeprefix("/slack"), SLACK_PATH_PAYMENTS.removeprefix("/slack")):
        return 404, text, b"no_service"
    try:
        message = json.loads(body)
    except ValueError:
        return 400, text, b"invalid_payload"
    if not isinstance(message, dict) or not (message.get("text") or message.get("blocks")):
        return 400, text, b"no_text"
    blocks = message.get("blocks") or []
    if len(blocks) > 50:
        return 400, text, b"invalid_blocks"
    for block in blocks:
        if len(((block.get("text") or {}).get("text")) or "") > 3000:
            return 400, text, b"invalid_blocks"
        for f in block.get("fields") or []:
            if len(f.get("text") or "") > 2000:
                return 400, text, b"invalid_blocks"
    return 200, text, b"ok"


def teams(path: str, query: dict, headers: dict, body: bytes) -> Reply:
    """A Workflows webhook ("Post to a channel when a webhook request is received"): 202 and no body for a message
    with one Adaptive Card; the flow's errors otherwise."""
    if path != TEAMS_PATH.removeprefix("/teams"):
        return _json(404, {"error": {"code": "WorkflowNotFound", "message": "The workflow could not be found."}})
    if query.get("sig") != [TEAMS_SIG]:
        return _json(401, {"error": {"code": "DirectApiAuthorizationRequired",
                                     "message": "The request must be authenticated only by Shared Access scheme."}})
    if len(body) > TEAMS_MESSAGE_MAX:
        return _json(413, {"error": {"code": "MessageSizeLimitExceeded", "message": "The message is too large."}})
    try:
        message = json.loads(body)
    except ValueError:
        return _json(400, {"error": {"code": "InvalidRequestContent", "message": "The content is not valid JSON."}})
    attachments = message.get("attachments") if isinstance(message, dict) else None
    card = (attachments[0] if isinstance(attachments, list) and len(attachments) == 1 else None) or {}
    content = card.get("content") or {}
    blocks = content.get("body")
    if (message.get("type") != "message" or card.get("contentType") != "application/vnd.microsoft.card.adaptive"
            or content.get("type") != "AdaptiveCard" or not content.get("version") or not isinstance(blocks, list)
            or not blocks or any(b.get("type") == "TextBlock" and not b.get("text") for b in blocks)):
        return _json(400, {"error": {"code": "InvalidTemplate",
                                     "message": "The message is not one Adaptive Card attachment."}})
    return 202, {}, b""


def sentry(path: str, query: dict, headers: dict, body: bytes) -> Reply:
    if path != f"/api/{SENTRY_PROJECT}/envelope/":
        return _json(404, {"detail": "not found"})
    auth = headers.get("x-sentry-auth", "")
    key = query.get("sentry_key", [None])[0] or dict(
        part.strip().split("=", 1) for part in auth.removeprefix("Sentry ").split(",") if "=" in part
    ).get("sentry_key")
    if key != SENTRY_KEY:
        return _json(401, {"detail": "invalid api key"})
    if headers.get("content-type") != "application/x-sentry-envelope":
        return _json(415, {"detail": "unsupported content type"})
    try:
        envelope_header, item_header, item = body.split(b"\n", 2)
        envelope_header, item_header = json.loads(envelope_header), json.loads(item_header)
        event = json.loads(item.rstrip(b"\n"))
    except ValueError:
        return _json(400, {"detail": "invalid envelope"})
    event_id = event.get("event_id", "")
    if not re.fullmatch(r"[0-9a-f]{32}", event_id) or envelope_header.get("event_id") != event_id:
        return _json(400, {"detail": "invalid event_id"})
    if item_header.get("type") != "event" or event.get("level") not in ("fatal", "error", "warning", "info", "debug"):
        return _json(400, {"detail": "invalid event"})
    return _json(200, {"id": event_id})


def app(path: str, query: dict, headers: dict, body: bytes) -> Reply:
    """A monitored application's health endpoint, for health probes."""
    return 200, {"Content-Type": "text/plain"}, b"healthy"


def heartbeat(path: str, query: dict, headers: dict, body: bytes) -> Reply:
    """A dead man's switch's ping URL, as healthchecks.io answers it (GET or POST /<uuid>: 200 "OK"; an unknown
    check: 404 "not found")."""
    if not re.fullmatch(r"/[0-9a-f-]{36}", path):
        return 404, {"Content-Type": "text/plain"}, b"not found"
    return 200, {"Content-Type": "text/plain"}, b"OK"


def webhook(path: str, query: dict, headers: dict, body: bytes) -> Reply:
    """A receiver as its authors would write it: verified with a Standard Webhooks library, and by 0.1.0's
    header for receivers written against that."""
    from standardwebhooks.webhooks import Webhook as Receiver
    from standardwebhooks.webhooks import WebhookVerificationError

    try:
        Receiver(WEBHOOK_SECRET).verify(body, {k: v for k, v in headers.items() if k.startswith("webhook-")})
    except WebhookVerificationError:
        return _json(401, {"error": "bad webhook-signature"})
    if not verify(WEBHOOK_SECRET, headers.get("x-pgalert-signature", ""), body, time.time()):
        return _json(401, {"error": "bad signature"})
    return _json(200, {"ok": True})


def slack_response(path: str, query: dict, headers: dict, body: bytes) -> Reply:
    """A Slack response_url: takes a message that replaces the clicked one."""
    try:
        message = json.loads(body)
    except ValueError:
        return 400, {"Content-Type": "text/plain"}, b"invalid_payload"
    ok = isinstance(message, dict) and (message.get("text") or message.get("blocks"))
    return (200, {"Content-Type": "text/plain"}, b"ok") if ok else (400, {"Content-Type": "text/plain"}, b"no_text")


def twilio(path: str, query: dict, headers: dict, body: bytes) -> Reply:
    """Programmable Messaging (Messages.json) and Voice (Calls.json): HTTP Basic with the account SID and Auth
    Token, a form body; 201 with the resource and its sid, or Twilio's error document (code, message,
    more_info, status)."""
    def error(status: int, code: int, message: str) -> Reply:
        return _json(status, {"code": code, "message": message, "status": status,
                              "more_info": f"https://www.twilio.com/docs/errors/{code}"})
    if not _twilio_authorized(headers):
        return error(401, 20003, "Authenticate")
    match = re.fullmatch(r"/2010-04-01/Accounts/(AC[0-9a-f]{32})/(Messages|Calls)\.json", path)
    if not match or match[1] != TWILIO_ACCOUNT_SID:
        return error(404, 20404, "The requested resource was not found")
    form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    to, sender = form.get("To", ""), form.get("From", "")
    if not re.fullmatch(r"\+[1-9][0-9]{6,14}", to):
        return error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if sender != TWILIO_FROM_NUMBER:
        return error(400, 21606, "The From phone number is not a valid, SMS-capable inbound phone number.")
    if to in TWILIO_MAGIC_TO:
        return error(400, *TWILIO_MAGIC_TO[to])
    if match[2] == "Messages":
        if not form.get("Body") or len(form["Body"]) > 1600:
            return error(400, 21617 if form.get("Body") else 21602, "Message body is required or too long.")
        return _json(201, {"sid": "SM" + uuid.uuid4().hex, "account_sid": TWILIO_ACCOUNT_SID, "to": to,
                           "from": sender, "body": form["Body"], "status": "queued", "num_segments": "1"})
    twiml = form.get("Twiml", "")
    if not (form.get("Url") or twiml.startswith("<Response>")) or len(twiml) > 4000:
        return error(400, 21205, "Url or Twiml is required; Twiml is at most 4000 characters.")
    return _json(201, {"sid": "CA" + uuid.uuid4().hex, "account_sid": TWILIO_ACCOUNT_SID, "to": to,
                       "from": sender, "status": "queued"})


def ntfy(path: str, query: dict, headers: dict, body: bytes) -> Reply:
    """ntfy's "publish as JSON" at the server's root: an access token when the server has access control, a
    topic of 1-64 letters, digits, _ or -; 200 with the message, or ntfy's error document."""
    def error(status: int, code: int, message: str) -> Reply:
        return _json(status, {"code": code, "http": status, "error": message, "link": "https://ntfy.sh/docs/publish/"})
    if path != "/":
        return error(404, 40401, "page not found")
    if headers.get("authorization") != f"Bearer {NTFY_TOKEN}":
        return error(403, 40301, "forbidden")
    try:
        message = json.loads(body)
    except ValueError:
        return error(400, 40024, "invalid request: body must be JSON")
    topic = message.get("topic") if isinstance(message, dict) else None
    if not isinstance(topic, str) or not re.fullmatch(r"[-_A-Za-z0-9]{1,64}", topic):
        return error(400, 40009, "invalid request: topic invalid")
    if message.get("priority") not in (None, 1, 2, 3, 4, 5):
        return error(400, 40007, "invalid priority")
    if len(body) > 4096 + 1024:
        return error(413, 41301, "request entity too large")
    return _json(200, {"id": uuid.uuid4().hex[:12], "time": int(time.time()), "event": "message", "topic": topic,
                       "title": message.get("title"), "message": message.get("message"),
                       "priority": message.get("priority", 3)})


ROUTES: dict[str, Callable[[str, dict, dict, bytes], Reply]] = {
    "pagerduty": pagerduty, "opsgenie": opsgenie, "jsm": jsm, "slack": slack, "teams": teams, "sentry": sentry,
    "webhook": webhook, "app": app, "heartbeat": heartbeat, "twilio": twilio, "ntfy": ntfy,
    "slack-response": slack_response,
}


def _pagerduty_rest(fake: FakeProviders, method: str, path: str, headers: dict) -> Reply:
    """PagerDuty's REST API, the one call `pgalert serve` makes: GET /incidents/{id}, token auth."""
    if headers.get("authorization") != f"Token token={PAGERDUTY_API_TOKEN}":
        return _json(401, {"error": {"message": "Unauthorized", "code": 2006}})
    match = re.fullmatch(r"/incidents/([A-Z0-9]+)", path)
    if method != "GET" or not match:
        return _json(404, {"error": {"message": "Not Found", "code": 2100}})
    with fake._cond:
        key = fake.incidents.get(match.group(1))
    if key is None:
        return _json(404, {"error": {"message": "Not Found", "code": 2100}})
    return _json(200, {"incident": {"id": match.group(1), "type": "incident", "incident_key": key,
                                    "status": "triggered", "title": "from the fake"}})


def _twilio_authorized(headers: dict) -> bool:
    """HTTP Basic with the account SID and Auth Token, as every Twilio REST call."""
    expected = "Basic " + base64.b64encode(f"{TWILIO_ACCOUNT_SID}:{TWILIO_AUTH_TOKEN}".encode()).decode()
    return headers.get("authorization") == expected


def _twilio(fake: FakeProviders, method: str, path: str, query: dict, headers: dict, body: bytes) -> Reply:
    """Twilio keeps what it created: a message or call is then fetched by its sid (GET
    /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json, .../Calls/{Sid}.json), with its status and error_code
    as they are now, or 404 with Twilio's error 20404."""
    fetch = re.fullmatch(r"/2010-04-01/Accounts/(AC[0-9a-f]{32})/(Messages|Calls)/([A-Z]{2}[0-9a-f]{32})\.json", path)
    if method == "GET" and fetch:
        if not _twilio_authorized(headers):
            return _json(401, {"code": 20003, "message": "Authenticate", "status": 401,
                               "more_info": "https://www.twilio.com/docs/errors/20003"})
        with fake._cond:
            resource = fake.twilio_resources.get(fetch[3])
            resource = dict(resource) if resource and fetch[1] == TWILIO_ACCOUNT_SID else None
        if resource is None:
            return _json(404, {"code": 20404, "message": f"The requested resource {path} was not found",
                               "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404})
        return _json(200, resource)
    status, reply_headers, reply = twilio(path, query, headers, body)
    if method == "POST" and status == 201:
        resource = json.loads(reply)
        with fake._cond:
            fake.twilio_resources[resource["sid"]] = {**resource, "error_code": None}
    return status, reply_headers, reply


def sign_pagerduty(body: bytes, secret: str) -> str:
    """X-PagerDuty-Signature as PagerDuty computes it (docs/webhooks/04-Signatures.md)."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_slack(body: bytes, secret: str, timestamp: int) -> dict[str, str]:
    """The headers Slack sends with an interactivity request ("Verifying requests from Slack")."""
    base = f"v0:{timestamp}:".encode() + body
    return {"X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()}


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog of 5 drops the SYNs of a client that opens a dozen connections at once
    # (the client then waits a second to retry); the vendors' front ends take thousands
    request_queue_size = 1024
    daemon_threads = True


def _handler_for(fake: FakeProviders) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like the real endpoints
        # headers and body go out as two writes; with Nagle on, the client's delayed ACK stalls each reply 40 ms
        disable_nagle_algorithm = True

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            arrived = time.perf_counter()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            url = urlsplit(self.path)
            provider, _, rest = url.path.lstrip("/").partition("/")
            headers = {k.lower(): v for k, v in self.headers.items()}
            query = parse_qs(url.query)
            fault = fake._next_fault(provider)
            if fault and fault.drop:
                fake._record(Received(provider, self.command, "/" + rest, query, headers, body, 0, arrived))
                self.close_connection = True
                self.connection.shutdown(2)  # the client sees the connection die mid-request
                return
            if fault:
                status, reply_headers, reply = fault.status, dict(fault.headers), fault.body
            elif provider == "slack" and fake.slack_rate_per_second and (
                arrived - fake._slack_last < 1 / fake.slack_rate_per_second
            ):
                status, reply_headers, reply = 429, {"Retry-After": "1", "Content-Type": "text/plain"}, b"rate_limited"
            elif provider == "twilio":
                status, reply_headers, reply = _twilio(fake, self.command, "/" + rest, query, headers, body)
            elif provider == "pagerduty-api":
                status, reply_headers, reply = _pagerduty_rest(fake, self.command, "/" + rest, headers)
            elif provider in ROUTES:
                status, reply_headers, reply = ROUTES[provider]("/" + rest, query, headers, body)
                if provider == "slack" and status == 200:
                    fake._slack_last = arrived
            else:
                status, reply_headers, reply = 404, {"Content-Type": "text/plain"}, b"unknown provider"
            fake._record(Received(provider, self.command, "/" + rest, query, headers, body, status, arrived))
            if fault and fault.hang:
                time.sleep(fault.hang)  # recorded on arrival: tests see the request while it hangs
            try:
                self.send_response(status)
                for name, value in reply_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                if fault and fault.cut:
                    self.wfile.write(reply[: len(reply) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(reply)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a scripted hang longer than its timeout)

        do_GET = do_POST  # noqa: N815 - health probes GET

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def describe(received: Received) -> str:
    """One human line for the demo: what this provider would have received."""
    try:
        document = received.json if received.provider != "sentry" else json.loads(received.body.split(b"\n")[2])
    except (ValueError, IndexError):
        document = {}
    if received.provider == "pagerduty":
        summary = (document.get("payload") or {}).get("summary", "")
        what = f"{document.get('event_action')} dedup_key={document.get('dedup_key')} {summary}"
    elif received.provider in ("opsgenie", "jsm"):
        verb = received.path.rsplit("/", 1)[-1] if "alerts/" in received.path else "create"
        what = f"{verb} {document.get('message') or ''}"
    elif received.provider == "slack":
        what = document.get("text", "")
    elif received.provider == "sentry":
        what = f"level={document.get('level')} {(document.get('message') or {}).get('formatted', '')}"
    elif received.provider == "pagerduty-api":
        what = f"{received.method} {received.path} (which alert is this incident?)"
    elif received.provider == "twilio":
        form = {k: v[0] for k, v in parse_qs(received.body.decode(errors="replace")).items()}
        what = (f"SMS to {form.get('To')}: {form.get('Body', '')}" if received.path.endswith("Messages.json")
                else f"call to {form.get('To')}")
    elif received.provider == "ntfy":
        what = f"push to {document.get('topic')} (priority {document.get('priority')}): {document.get('title')}"
    elif received.provider == "slack-response":
        lines = [e.get("text", "") for b in document.get("blocks", []) if b.get("type") == "context"
                 for e in b.get("elements", [])]
        what = f"message updated: {lines[-1] if lines else ''}"
    else:
        what = f"{document.get('event')} alert #{(document.get('alert') or {}).get('id')}"
    return f"[{received.provider:>9} <- {received.status}] {what}"[:200]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8089)
    args = parser.parse_args()
    fake = FakeProviders(port=args.port, on_request=lambda r: print(describe(r), flush=True)).start()
    for name, value in fake.env().items():
        print(f"export {name}='{value}'")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
