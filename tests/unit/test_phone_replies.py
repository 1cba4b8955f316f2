"""What a paged person's phone sends back, read without a network: Twilio's signature (with the example Twilio
publishes), the replies a text may hold, the keys of a call, and what the person is told."""

from __future__ import annotations

import pytest

from dispatcher.inbound.translate import PhoneReply, keypress, phone_answer, sms_reply, twiml
from dispatcher.inbound.verify import twilio_signature_ok

# Twilio's own worked example ("Secure webhooks", and its helper libraries' tests)
EXAMPLE_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
EXAMPLE_PARAMS = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675310"), ("Digits", "1234"),
                  ("From", "+14158675310"), ("To", "+18005551212")]
EXAMPLE_SIGNATURE = "GvWf1cFY/Q7PnoempGyD5oXAezc="


def test_twilios_published_example_signature_is_accepted():
    assert twilio_signature_ok(EXAMPLE_URL, EXAMPLE_PARAMS, EXAMPLE_SIGNATURE, "12345")
    assert twilio_signature_ok(EXAMPLE_URL, list(reversed(EXAMPLE_PARAMS)), EXAMPLE_SIGNATURE, "12345")  # any order


@pytest.mark.parametrize(("url", "params", "signature", "token"), [
    (EXAMPLE_URL, EXAMPLE_PARAMS, EXAMPLE_SIGNATURE, "54321"),                          # another account's token
    (EXAMPLE_URL.replace("https", "http"), EXAMPLE_PARAMS, EXAMPLE_SIGNATURE, "12345"),  # another URL
    (EXAMPLE_URL, [*EXAMPLE_PARAMS[:2], ("Digits", "6"), *EXAMPLE_PARAMS[3:]], EXAMPLE_SIGNATURE, "12345"),
    (EXAMPLE_URL, EXAMPLE_PARAMS, None, "12345"),                                        # unsigned
    (EXAMPLE_URL, EXAMPLE_PARAMS, EXAMPLE_SIGNATURE, ""),                                # no token configured
])
def test_anything_else_is_refused(url, params, signature, token):
    assert not twilio_signature_ok(url, params, signature, token)


@pytest.mark.parametrize(("text", "reply"), [
    ("4", PhoneReply("acknowledge")), ("Ack", PhoneReply("acknowledge")), ("4 123", PhoneReply("acknowledge", 123)),
    ("  ack #123 ", PhoneReply("acknowledge", 123)), ("6 9", PhoneReply("resolve", 9)),
    ("resolve 9", PhoneReply("resolve", 9)), ("STOP", PhoneReply("stop")), ("unsubscribe", PhoneReply("stop")),
    ("Start", PhoneReply("start")), ("4 please", PhoneReply(None)), ("hello", PhoneReply(None)), ("", PhoneReply(None)),
    ("stop it", PhoneReply(None)), ("4 1 2", PhoneReply(None)), ("4 99999999999999999999", PhoneReply(None)),
])
def test_what_a_text_back_asks(text, reply):
    assert sms_reply(text) == reply


def test_a_call_takes_4_and_6_only():
    assert [keypress(d) for d in ("4", "6", "5", "", None, "44")] == ["acknowledge", "resolve", None, None, None, None]


def test_what_the_person_is_told_and_what_a_stranger_is_not():
    assert phone_answer("acknowledged", 12, "acknowledge") == "Acknowledged alert 12."
    assert phone_answer("already_resolved", 12, "acknowledge") == "Alert 12 was already resolved."
    assert "reply 6 and the alert's number" in phone_answer("ambiguous", None, "resolve")
    assert phone_answer("unknown_sender", None, "resolve") is None and phone_answer("duplicate", 3, "resolve") is None
    assert twiml(message="a <b> & c") == (b'<?xml version="1.0" encoding="UTF-8"?><Response>'
                                          b"<Message>a &lt;b&gt; &amp; c</Message></Response>")
