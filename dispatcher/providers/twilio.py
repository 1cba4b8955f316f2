"""Twilio: a text message (Programmable Messaging, Messages.json) or a phone call (Programmable Voice, Calls.json
with TwiML that reads the alert) to a person's verified number (sql/paging.sql).

Twilio's REST API takes a form body, authenticated by the account SID and Auth Token (HTTP Basic), and answers
201 with the message's or call's resource, whose sid is kept as the delivery's provider_reference; an error is a
JSON document with Twilio's own code (21211: not a valid phone number, 21610: the person texted STOP, 21614: not
a mobile number), and 429 or 5xx are worth retrying.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from dispatcher.providers.base import (
    Delivery,
    HttpRequest,
    HttpResponse,
    OneAtATime,
    Verdict,
    escape_within,
    judge_by_status,
    parse_json,
    truncate,
)

API_URL = "https://api.twilio.com"
# Messaging: a Body is at most 1,600 characters; kept to two segments' worth, a page is read at a glance
SMS_MAX = 320
# Voice: inline TwiML is at most 4,000 characters (error 32018 fails the call); a saying is kept far shorter
TWIML_MAX = 4000
SAID_MAX = 1500
# what XML 1.0 cannot hold even escaped (control characters, U+FFFE, U+FFFF, lone surrogates): a writer's title
# with one would make the whole TwiML unreadable to Twilio
XML_UNSAFE = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Twilio's errors that no retry can mend: the number is wrong or has opted out
FINAL_ERRORS = {21211: "not a valid phone number", 21214: "not a reachable phone number",
                21610: "the person replied STOP to this number", 21614: "not a mobile number",
                21408: "this region is not enabled on the Twilio account", 13224: "not a valid phone number"}
SID = re.compile("(SM|MM|CA)[0-9a-f]{32}")  # a message's or call's sid, as Twilio gives them
STATUS = re.compile("[a-z-]{1,20}")  # queued, sent, delivered, no-answer, in-progress, ...
SEVERITY_WORDS = {"critical": "Critical", "warning": "Warning", "info": "Info"}


@dataclass(frozen=True)
class Twilio(OneAtATime):
    account_sid: str
    auth_token: str
    from_number: str
    api_url: str = API_URL
    # `pgalert serve`'s public URL: when set, Twilio reports each message's fate there, a call offers "press 4 to
    # acknowledge, 6 to resolve" and a text says how to reply
    public_url: str = ""
    name: str = "twilio"

    def secrets(self) -> tuple[str, ...]:
        return (self.auth_token,)

    def build(self, delivery: Delivery) -> HttpRequest | None:
        contact = delivery.context.get("contact") or {}
        kind, to = contact.get("kind"), str(contact.get("address") or "")
        if delivery.action != "notify" or kind not in ("sms", "voice") or not to:
            return None  # Twilio carries messages to a person's number, never an alert's trigger
        form = {"To": to, "From": self.from_number}
        answerable = bool(self.public_url) and str(delivery.target).startswith("page:") and not _own(delivery)
        if kind == "sms":
            resource, form["Body"] = "Messages.json", sms_text(delivery, answerable)
        else:
            gather = f"{self.public_url.rstrip('/')}/v1/twilio/voice?d={delivery.delivery_id}" if answerable else ""
            resource, form["Twiml"] = "Calls.json", call_twiml(delivery, gather)
        if self.public_url:
            form["StatusCallback"] = f"{self.public_url.rstrip('/')}/v1/twilio/status"
        return HttpRequest(
            "POST", f"{self.api_url.rstrip('/')}/2010-04-01/Accounts/{self.account_sid}/{resource}",
            {"Authorization": f"Basic {self._credentials()}", "Content-Type": "application/x-www-form-urlencoded"},
            urlencode(form).encode())

    def status_request(self, kind: str, sid: str) -> HttpRequest | None:
        """Twilio's fetch of a message (sms) or call (voice) by its sid, which says its status: how the dispatcher
        learns a final status whose callback never came. None for a sid Twilio cannot have given."""
        if kind not in ("sms", "voice") or not SID.fullmatch(sid):
            return None
        resource = "Messages" if kind == "sms" else "Calls"
        return HttpRequest(
            "GET", f"{self.api_url.rstrip('/')}/2010-04-01/Accounts/{self.account_sid}/{resource}/{sid}.json",
            {"Authorization": f"Basic {self._credentials()}"}, b"")

    def _credentials(self) -> str:
        return base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()

    def judge(self, delivery: Delivery, response: HttpResponse) -> Verdict:
        verdict = judge_by_status(response)
        document = parse_json(response.body)
        if verdict.outcome == "succeeded":
            return Verdict("succeeded", reference=str(document.get("sid") or "") or None)
        code = document.get("code")
        if isinstance(code, int) and code in FINAL_ERRORS:
            return Verdict("failed", f"Twilio {code}: {FINAL_ERRORS[code]}")
        if response.status in (401, 403):
            return Verdict("failed", f"HTTP {response.status}: Twilio refused the account SID and Auth Token")
        return verdict


def status_of(response: HttpResponse) -> tuple[str, str | None] | None:
    """A fetched message's or call's status and error code (Twilio's resource: status, error_code), or None when
    the reply is no such resource."""
    if response.status != 200:
        return None
    document = parse_json(response.body)
    status, code = document.get("status"), document.get("error_code")
    if not isinstance(status, str) or not STATUS.fullmatch(status):
        return None
    return status, (str(code)[:20] if isinstance(code, (int, str)) and str(code) else None)


def _own(delivery: Delivery) -> bool:
    """pgalert's own message to a person (a code, a test page), not an alert's page."""
    alert = delivery.alert
    return str(alert.get("alert_type") or "").startswith("pgalert_") and alert.get("status") == "resolved"


def _headline(delivery: Delivery) -> str:
    alert = delivery.alert
    if _own(delivery):
        return str(alert.get("title") or "pgalert")
    severity = SEVERITY_WORDS.get(str(alert.get("severity")), "Alert")
    return f"{severity}: {alert.get('title') or 'pgalert alert'}"


def sms_text(delivery: Delivery, answerable: bool = False) -> str:
    """The page as a text: what is wrong first, then why this person, the alert's id and how to answer."""
    reason = str(delivery.context.get("reason") or "")
    alert_id = delivery.alert.get("id")
    text = f"pgalert {_headline(delivery)}"
    tail = f"\n{reason}" + (f"\nAlert {alert_id}" if str(delivery.target).startswith("page:") else "")
    if answerable:
        tail += f"\nReply 4 {alert_id} to acknowledge, 6 {alert_id} to resolve"
    return truncate(text, max(SMS_MAX - len(tail), 40)) + tail[: SMS_MAX]


def call_twiml(delivery: Delivery, gather_url: str = "") -> str:
    """What the call says: the alert twice (a person woken up misses the first time), and with gather_url, the
    keys that acknowledge (4) and resolve (6), posted back to `pgalert serve`. Whatever the writer's title holds,
    the TwiML is well-formed XML within Twilio's 4,000 characters: each saying gets half of what the rest leaves."""
    reason = str(delivery.context.get("reason") or "")
    code = str(delivery.context.get("code") or "")
    if code:  # a verification code is read digit by digit
        reason = reason.replace(code, " ".join(code))
    spoken = XML_UNSAFE.sub("", f"This is pgalert. {_headline(delivery)}. {reason}.")
    if gather_url:
        keys = "Press 4 to acknowledge, or 6 to resolve."
        action = escape(gather_url, {'"': "&quot;"})

        def twiml(said: str) -> str:
            return (f'<Response><Gather numDigits="1" timeout="10" method="POST" action="{action}">'
                    f'<Say>{said}</Say><Say>{keys}</Say><Pause length="1"/><Say>Again. {said}</Say><Say>{keys}</Say>'
                    f'</Gather><Say>No key was pressed. Goodbye.</Say></Response>')
    else:
        def twiml(said: str) -> str:
            return f'<Response><Say>{said}</Say><Pause length="1"/><Say>Again. {said}</Say></Response>'
    said_max = min(SAID_MAX, (TWIML_MAX - len(twiml(""))) // 2)
    return twiml(escape_within(spoken, max(said_max, 0), escape))
