"""The channels that reach a person's own phone: Twilio (SMS, voice) and ntfy (push). What each request carries,
written from the vendors' API references, and how each reply is judged."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs

import pytest

from dispatcher.inbound.verify import action_token_delivery
from dispatcher.providers.base import Delivery, HttpResponse
from dispatcher.providers.ntfy import Ntfy
from dispatcher.providers.twilio import SMS_MAX, TWIML_MAX, Twilio
from tests.memory import stored_alert as seed_alert

SID = "AC" + "0" * 32
TWILIO = Twilio(SID, "auth-token-0123456789abcdef012345", "+15005550006", api_url="https://api.twilio.com")


def stored_alert(alert_id: int, **fields) -> dict:
    return {**seed_alert(alert_id), **fields}


def message(kind: str, address: str, *, target: str = "page:1:2", reason: str = "escalation level 1 of policy wake",
            alert: dict | None = None, **context) -> Delivery:
    return Delivery(7, 1, "twilio", "notify", target,
                    {"person": "alice", "reason": reason, "contact": {"kind": kind, "address": address}, **context},
                    "pgalert-1", alert or stored_alert(42, title="Primary <db> down & out", severity="critical"))


def form(request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.body.decode()).items()}


def test_an_sms_goes_to_messages_json_with_basic_auth_and_says_what_is_wrong_first():
    request = TWILIO.build(message("sms", "+14155550123"))
    assert request.method == "POST" and request.url == f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(f"{SID}:{TWILIO.auth_token}".encode()).decode()
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    sent = form(request)
    assert sent["To"] == "+14155550123" and sent["From"] == "+15005550006" and "StatusCallback" not in sent
    assert sent["Body"].splitlines() == ["pgalert Critical: Primary <db> down & out",
                                         "escalation level 1 of policy wake", "Alert 42"]


def test_a_long_title_is_cut_so_the_reason_and_the_alert_id_still_fit():
    body = form(TWILIO.build(message("sms", "+14155550123", alert=stored_alert(42, title="x" * 5000))))["Body"]
    assert len(body) <= SMS_MAX and body.endswith("escalation level 1 of policy wake\nAlert 42")


def test_a_call_reads_the_alert_twice_in_escaped_twiml_and_a_code_digit_by_digit():
    sent = form(TWILIO.build(message("voice", "+14155550123")))
    assert sent["Twiml"].startswith("<Response><Say>This is pgalert. Critical: Primary &lt;db&gt; down &amp; out.")
    assert sent["Twiml"].count("<Say>") == 2 and len(sent["Twiml"]) <= TWIML_MAX
    code = message("voice", "+14155550123", target="verify:3", reason="your pgalert verification code is 042917",
                   code="042917", alert=stored_alert(9, alert_type="pgalert_contact_verification", status="resolved",
                                                     title="pgalert verification code"))
    assert "code is 0 4 2 9 1 7" in form(TWILIO.build(code))["Twiml"]


def test_with_serve_a_page_says_how_to_answer_and_twilio_reports_back_to_it():
    twilio = Twilio(SID, "t" * 32, "+15005550006", public_url="https://pgalert.example.com/")
    text = form(twilio.build(message("sms", "+14155550123")))
    assert text["StatusCallback"] == "https://pgalert.example.com/v1/twilio/status"
    assert text["Body"].endswith("\nAlert 42\nReply 4 42 to acknowledge, 6 42 to resolve") and len(text["Body"]) <= SMS_MAX
    call = form(twilio.build(message("voice", "+14155550123")))["Twiml"]
    # the keypress goes back with the call's delivery id in a URL Twilio signs, so it cannot be pointed elsewhere
    assert call.startswith('<Response><Gather numDigits="1" timeout="10" method="POST" '
                           'action="https://pgalert.example.com/v1/twilio/voice?d=7">')
    assert "Press 4 to acknowledge, or 6 to resolve." in call and len(call) <= TWIML_MAX
    # a code or a test page is nothing to answer
    code = message("sms", "+14155550123", target="verify:3", reason="your pgalert verification code is 042917",
                   alert=stored_alert(9, alert_type="pgalert_contact_verification", status="resolved"))
    assert "Reply" not in form(twilio.build(code))["Body"]


@pytest.mark.parametrize("context", [
    {"contact": {"kind": "push", "address": "topic"}},  # another channel's kind
    {"contact": {"kind": "sms", "address": ""}},
    {},  # an escalation's notify to a channel: Twilio has no number for it
])
def test_twilio_sends_nothing_without_a_number_of_its_kind(context):
    assert TWILIO.build(Delivery(1, 1, "twilio", "notify", "", context, "k", stored_alert(1))) is None


@pytest.mark.parametrize(("status", "body", "outcome", "error"), [
    (201, {"sid": "SM0123", "status": "queued"}, "succeeded", None),
    (400, {"code": 21211, "message": "The 'To' number is not a valid phone number."}, "failed",
     "Twilio 21211: not a valid phone number"),
    (400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient"}, "failed",
     "Twilio 21610: the person replied STOP to this number"),
    (401, {"code": 20003, "message": "Authenticate"}, "failed", "HTTP 401: Twilio refused the account SID and Auth Token"),
    (429, {"code": 20429, "message": "Too Many Requests"}, "retry", None),
    (503, {}, "retry", None),
])
def test_twilio_replies_are_judged_by_its_status_and_error_code(status, body, outcome, error):
    verdict = TWILIO.judge(message("sms", "+1"), HttpResponse(status, {}, json.dumps(body).encode()))
    assert verdict.outcome == outcome
    if outcome == "succeeded":
        assert verdict.reference == "SM0123"
    elif error:
        assert verdict.error == error


def test_the_auth_token_is_a_secret_to_redact():
    assert TWILIO.secrets() == (TWILIO.auth_token,)


def test_a_push_is_published_as_json_to_the_channels_server_with_its_token():
    ntfy = Ntfy("https://ntfy.example.com", "tk_secret")
    request = ntfy.build(message("push", "oncall-alice"))
    assert request.url == "https://ntfy.example.com/" and request.headers["Authorization"] == "Bearer tk_secret"
    document = json.loads(request.body)
    assert document["topic"] == "oncall-alice" and document["priority"] == 5
    assert document["title"] == "Primary <db> down & out" and document["message"].endswith("Alert 42")
    assert ntfy.secrets() == ("tk_secret",)


def test_a_push_never_leaves_the_channels_server_and_a_warning_is_less_urgent():
    ntfy = Ntfy()  # the public server, no token
    warning = message("push", "oncall-alice", alert=stored_alert(5, severity="warning"))
    request = ntfy.build(warning)
    assert request.url == "https://ntfy.sh/" and "Authorization" not in request.headers
    assert json.loads(request.body)["priority"] == 4
    assert ntfy.build(message("sms", "+14155550123")) is None


def test_with_serve_a_push_carries_a_signed_acknowledge_button_for_its_one_alert():
    ntfy = Ntfy("https://ntfy.example.com", "", "https://pgalert.example.com", "action-key", clock=lambda: 1_000_000)
    [button] = json.loads(ntfy.build(message("push", "oncall-alice")).body)["actions"]
    assert (button["action"], button["label"], button["method"]) == ("http", "Acknowledge", "POST")
    token = button["url"].removeprefix("https://pgalert.example.com/v1/ntfy/ack/")
    assert action_token_delivery("action-key", token, 1_000_000) == 7  # this delivery's alert, for 24 hours
    assert action_token_delivery("action-key", token, 1_000_000 + 24 * 3600) is None
    assert action_token_delivery("another-key", token, 1_000_000) is None
    assert "action-key" in ntfy.secrets()


def test_ntfy_replies_keep_the_message_id_and_retry_its_limits():
    ntfy = Ntfy()
    assert ntfy.judge(message("push", "t"), HttpResponse(200, {}, b'{"id":"abc123"}')).reference == "abc123"
    assert ntfy.judge(message("push", "t"), HttpResponse(429, {"retry-after": "5"}, b"{}")).outcome == "retry"
    assert ntfy.judge(message("push", "t"), HttpResponse(403, {}, b'{"code":40301}')).outcome == "failed"


def test_a_status_update_is_a_quiet_push_and_a_plain_text_that_nobody_can_answer():
    """Someone else took the alert: the person is told, not woken again (sql/paging.sql's status messages)."""
    taken = {"target": "status:1:acknowledged:1700000000000", "reason": "alert 42 acknowledged by bob"}
    ntfy = Ntfy("https://ntfy.example.com", "", "https://pgalert.example.com", "action-key")
    document = json.loads(ntfy.build(message("push", "oncall-alice", **taken)).body)
    assert document["priority"] == 3 and "actions" not in document
    assert document["message"].startswith("alert 42 acknowledged by bob") and "rotating_light" not in document["tags"]
    answerable = Twilio(SID, "auth-token-0123456789abcdef012345", "+15005550006", public_url="https://pgalert.example.com")
    text = form(answerable.build(message("sms", "+14155550123", **taken)))["Body"]
    assert "alert 42 acknowledged by bob" in text and "Reply" not in text
