"""Every stored alert, whatever it holds, becomes a request each provider accepts: within its documented
limits, and never an exception. Generated with Hypothesis, deterministically (derandomize), so a failure
here is a reproducible bug, not a flake."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl
from xml.etree import ElementTree

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.providers.base import Delivery, HttpRequest, Verdict
from dispatcher.providers.jsm import JiraServiceManagement
from dispatcher.providers.mail import Mail
from dispatcher.providers.ntfy import Ntfy
from dispatcher.providers.teams import Teams
from dispatcher.providers.twilio import Twilio
from dispatcher.worker import build_request
from tests.helpers import PROVIDERS, assert_within_limits, json_values

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


texts = st.text()
# huge values are named here and made inside the test, so a failing example prints in a line
HUGE = {
    "ascii": lambda: "x" * 300_000,
    "emoji": lambda: "💳" * 100_000,
    "nul": lambda: "ñ\u0000" * 50_000,
    "object": lambda: {"blob": "y" * 2_000_000},
    "array": lambda: list(range(100_000)),
}
alerts = st.fixed_dictionaries({
    "id": st.integers(1, 2**62),
    "alert_type": texts,
    "severity": st.sampled_from(["critical", "warning", "info"]) | st.text(max_size=10),
    "priority": st.sampled_from(["P0", "P1", "P2"]) | st.none(),
    "title": texts,
    "message": texts | st.none(),
    "source": texts | st.none(),
    "dedup_key": texts | st.none(),
    "details": json_values,
    "occurrence_count": st.integers(1, 10**6),
    "created_at": st.just("2026-11-30T10:00:00+00:00"),
    "occurred_at": st.just("2026-11-30T09:59:00+00:00"),
    "status": st.sampled_from(["open", "acknowledged", "resolved"]),
})


def deliveries_for(alert: dict, provider: str, action: str) -> list[Delivery]:
    context = {"by": "alice", "note": "on it"} if action != "trigger" else {}
    return [Delivery(1, 1, provider, action, "", context, f"pgalert-abcd1234-{alert['id']}", alert)]


@PROPERTY
@given(alert=alerts, provider=st.sampled_from(sorted(PROVIDERS)),
       action=st.sampled_from(["trigger", "acknowledge", "resolve", "notify"]),
       huge=st.dictionaries(st.sampled_from(["title", "message", "source", "alert_type", "dedup_key", "details"]),
                            st.sampled_from(sorted(HUGE)), max_size=3))
def test_any_stored_alert_builds_a_request_within_the_providers_limits(alert, provider, action, huge):
    for field, kind in huge.items():
        value = HUGE[kind]()
        alert[field] = value if field == "details" or isinstance(value, str) else str(value)[:300_000]
    request = build_request(PROVIDERS[provider], deliveries_for(alert, provider, action))
    if isinstance(request, Verdict):  # only "this provider has nothing to say for this action" is allowed
        assert request.outcome == "skipped", request
        return
    assert_within_limits(provider, request)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("field", ["title", "message", "source", "alert_type", "dedup_key", "details"])
@pytest.mark.parametrize("kind", sorted(HUGE))
def test_every_field_at_every_huge_size_stays_within_the_limits(provider, field, kind):
    alert = {"id": 1, "alert_type": "a", "severity": "critical", "priority": "P0", "title": "t", "message": "m",
             "source": "s", "dedup_key": "k", "details": {}, "occurrence_count": 1, "status": "open"}
    value = HUGE[kind]()
    alert[field] = value if field == "details" or isinstance(value, str) else str(value)[:300_000]
    request = build_request(PROVIDERS[provider], deliveries_for(alert, provider, "trigger"))
    assert isinstance(request, HttpRequest)
    assert_within_limits(provider, request)


class Broken:
    """A provider whose full payload builder has a bug: it can only build the minimal alert."""

    name = "pagerduty"

    def build(self, delivery: Delivery) -> HttpRequest | None:
        if delivery.alert.get("message"):
            raise AttributeError("'list' object has no attribute 'get'")
        return PROVIDERS["pagerduty"].build(delivery)


def test_a_payload_builder_bug_still_pages_with_title_severity_and_id():
    alert = {"id": 7, "alert_type": "payment_failure", "severity": "critical", "title": "Card payments failing",
             "message": "boom", "details": [1, 2]}
    request = build_request(Broken(), deliveries_for(alert, "pagerduty", "trigger"))
    assert isinstance(request, HttpRequest)
    event = json.loads(request.body)
    assert event["event_action"] == "trigger" and event["payload"]["severity"] == "critical"
    assert event["payload"]["summary"] == "Card payments failing" and event["payload"]["custom_details"]["alert_id"] == 7


def test_a_builder_that_cannot_even_build_the_minimal_page_fails_once_instead_of_retrying():
    class Hopeless:
        name = "pagerduty"

        def build(self, delivery: Delivery) -> HttpRequest | None:
            raise RuntimeError("no")

    verdict = build_request(Hopeless(), deliveries_for({"id": 1, "title": "t", "severity": "critical"}, "pagerduty", "trigger"))
    assert verdict == Verdict("failed", "internal error building the request: RuntimeError: no")


# --- writer text dense in markup: every vendor's markup stays well-formed and within its limits (#35 item 9) ---

# what XML, Slack mrkdwn, Teams Markdown, HTML and form encoding treat specially, and what XML 1.0 cannot hold
MARKUP = "&<>\"'\\`*_~[]()|!#:@;=%+\n\r\t\x00\x07\x1b\ud7ff\ufffe\uffff💳"
# long runs too: Hypothesis favours short texts, and a cut only shows in a long one
markup_texts = (st.text(st.sampled_from(MARKUP), max_size=1024)
                | st.text(st.sampled_from(MARKUP) | st.characters(), max_size=1024)
                | st.builds(lambda run, times: (run * times)[:1024], st.text(st.sampled_from(MARKUP), min_size=1,
                                                                             max_size=6), st.integers(1, 1024)))
PHONE = {
    "twilio": Twilio("AC123", "twilio-token", "+15550000000"),
    "twilio with serve": Twilio("AC123", "twilio-token", "+15550000000", public_url="https://pgalert.example.com"),
    "ntfy": Ntfy(),
    "ntfy with serve": Ntfy(public_url="https://pgalert.example.com", action_key="k" * 32),
}
EVERY_PROVIDER = {
    **PROVIDERS, **PHONE,
    "teams": Teams("https://example.webhook.office.com/workflows/x?sig=s"),
    "jsm": JiraServiceManagement("jsm-key"),
    "email": Mail("smtp://localhost:25", "pgalert@example.com", ("oncall@example.com",)),
}


def phone_delivery(alert: dict, kind: str, reason: str) -> Delivery:
    contact = {"kind": kind, "address": "ops-topic" if kind == "push" else "+15551234567"}
    return Delivery(9, 1, "twilio", "notify", "page:alice", {"contact": contact, "reason": reason, "person": "alice"},
                    f"pgalert-abcd1234-{alert['id']}", alert)


def assert_well_formed(provider: str, request) -> None:
    """What each vendor's markup needs of a payload, beyond its lengths: nothing a cut or a writer's text breaks."""
    if provider.startswith("twilio"):
        form = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
        if "Twiml" in form:
            assert len(form["Twiml"]) <= 4000
            ElementTree.fromstring(form["Twiml"])  # well-formed XML, whatever the title held
        if "Body" in form:
            assert 0 < len(form["Body"]) <= 1600 and len(form["Body"].encode("utf-16-le")) // 2 <= 1600
    elif provider.startswith("ntfy"):
        document = json.loads(request.body)
        assert len(document["message"].encode()) <= 4096 and len(document["title"]) <= 250
    elif provider == "slack":
        assert_within_limits(provider, request)
        message = json.loads(request.body)
        for text in [message["text"], *mrkdwn_texts(message["blocks"])]:
            assert "&" not in re.sub(r"&(amp|lt|gt);", "", text), text  # never an entity cut in half
    elif provider == "teams":
        assert len(request.body) <= 28 * 1024
    elif provider == "email":
        assert len(request.message) <= 10 * 1024 * 1024
        assert b"\r\nSubject:" in request.message or request.message.startswith(b"Subject:")
    else:
        assert_within_limits("opsgenie" if provider == "jsm" else provider, request)


def mrkdwn_texts(document) -> list[str]:
    if isinstance(document, list):
        return [t for v in document for t in mrkdwn_texts(v)]
    if not isinstance(document, dict):
        return []
    own = [document["text"]] if document.get("type") == "mrkdwn" else []
    return own + [t for v in document.values() for t in mrkdwn_texts(v)]


@PROPERTY
@given(title=markup_texts, message=markup_texts, source=markup_texts, alert_type=markup_texts, note=markup_texts,
       reason=markup_texts, provider=st.sampled_from(sorted(EVERY_PROVIDER)),
       action=st.sampled_from(["trigger", "acknowledge", "resolve", "notify", "sms", "voice", "push"]))
def test_writer_text_dense_in_markup_keeps_every_payload_well_formed_and_within_limits(
        title, message, source, alert_type, note, reason, provider, action):
    alert = {"id": 123, "alert_type": alert_type, "severity": "critical", "priority": "P0", "title": title or "t",
             "message": message, "source": source, "dedup_key": title, "details": {title: message},
             "occurrence_count": 2, "status": "open"}
    if action in ("sms", "voice", "push"):
        delivery = phone_delivery(alert, action, reason)
    else:
        delivery = Delivery(1, 1, provider, action, "", {"by": note, "note": note, "reason": reason, "person": note},
                            f"pgalert-abcd1234-{alert['id']}", alert)
    request = build_request(EVERY_PROVIDER[provider], [delivery])
    if isinstance(request, Verdict):
        assert request.outcome == "skipped", request
        return
    assert_well_formed(provider, request)


@pytest.mark.parametrize(("provider", "kind"), [(p, k) for p in sorted(PHONE) for k in ("sms", "voice", "push")
                                                 if (k == "push") == p.startswith("ntfy")])
@pytest.mark.parametrize("title", ["&<>\"'" * 205, "&" * 1024, "<" * 1024, "'\"" * 512, "x\x00&" * 341])
def test_a_title_of_1024_markup_characters_still_wakes_the_person(provider, kind, title):
    """The issue's payload: a 1,024-character title dense with & < > " ' became 4,042-10,715 characters of TwiML
    (Twilio's limit is 4,000: error 32018, no phone rings), or XML cut in the middle."""
    alert = {"id": 7, "alert_type": "a", "severity": "critical", "title": title, "status": "open"}
    request = EVERY_PROVIDER[provider].build(phone_delivery(alert, kind, "you are on call for payments"))
    assert isinstance(request, HttpRequest)
    assert_well_formed(provider, request)


@pytest.mark.parametrize("provider", sorted(EVERY_PROVIDER))
@pytest.mark.parametrize("action", ["trigger", "acknowledge", "resolve", "notify", "sms", "voice", "push"])
@pytest.mark.parametrize("run", ["&", "<>", "&<>\"'", "*[`\\~", "\x00\x1b&"])
def test_every_text_field_full_of_markup_keeps_every_payload_well_formed(provider, action, run):
    text = (run * 6000)[:5000]
    alert = {"id": 123, "alert_type": text, "severity": "critical", "priority": "P0", "title": text[:1024],
             "message": text, "source": text, "dedup_key": text, "occurrence_count": 2,
             "details": {text: text, "runbook_url": "https://example.com/" + text, "links": [{"href": "https://x/"}] * 9},
             "status": "open"}
    context = {"by": text, "note": text, "reason": text[:300], "person": text[:200]}
    delivery = (phone_delivery(alert, action, text[:300]) if action in ("sms", "voice", "push")
                else Delivery(1, 1, provider, action, "", context, f"pgalert-abcd1234-{alert['id']}", alert))
    request = build_request(EVERY_PROVIDER[provider], [delivery])
    if isinstance(request, Verdict):
        assert request.outcome == "skipped", request
        return
    assert_well_formed(provider, request)
