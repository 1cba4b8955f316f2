"""Provider payloads are pure: built from an alert row, checked against the vendors' limits and contracts."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import json

import pytest

from devtools import fake_providers as fake
from dispatcher.providers.base import Delivery, HttpResponse, Unconfigured, truncate, truncate_utf8
from dispatcher.providers.jsm import JiraServiceManagement
from dispatcher.providers.mail import Mail
from dispatcher.providers.opsgenie import Opsgenie
from dispatcher.providers.pagerduty import EU_EVENTS_URL, PagerDuty
from dispatcher.providers.sentry import Sentry, event_id, parse_sentry_target
from dispatcher.providers.slack import Slack
from dispatcher.providers.teams import Teams
from dispatcher.providers.webhook import Webhook, sign, verify


def alert(**overrides):
    row = {
        "id": 7, "alert_type": "payment_failure", "severity": "critical", "priority": "P0", "title": "Payments failing",
        "message": "3 failures in 5 min", "source": "checkout", "dedup_key": "payment_failure:checkout",
        "details": {"gateway": "mercadopago", "runbook_url": "https://runbooks.example/payments"},
        "occurrence_count": 1, "occurred_at": "2026-11-26T10:00:00+00:00", "created_at": "2026-11-26T10:00:05+00:00",
    }
    return {**row, **overrides}


def delivery(action="trigger", provider="pagerduty", context=None, **alert_overrides):
    return Delivery(11, 1, provider, action, "", context or {}, "pgalert-abcd1234-7", alert(**alert_overrides))


HUGE = {"title": "💥 " + "Ünïcödé " * 500, "message": "m" * 100_000, "details": {"k": "v" * 600_000}}
PAGERDUTY = PagerDuty(fake.PAGERDUTY_KEY)
OPSGENIE = Opsgenie(fake.OPSGENIE_KEY)
SLACK = Slack("http://hooks.local" + fake.SLACK_PATH)
TEAMS_URL = f"https://prod-00.westeurope.logic.azure.com:443{fake.TEAMS_PATH.removeprefix('/teams')}?sig={fake.TEAMS_SIG}"
TEAMS = Teams(TEAMS_URL)
SENTRY = Sentry(parse_sentry_target(f"https://{fake.SENTRY_KEY}@sentry.local/{fake.SENTRY_PROJECT}"))


# ---- PagerDuty ----------------------------------------------------------------------------------------------

def test_pagerduty_trigger_event():
    request = PAGERDUTY.build(delivery())
    event = json.loads(request.body)
    assert request.url == "https://events.pagerduty.com/v2/enqueue"
    assert event["event_action"] == "trigger" and event["dedup_key"] == "pgalert-abcd1234-7"
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["summary"] == "Payments failing: 3 failures in 5 min"
    assert event["payload"]["class"] == "payment_failure" and event["payload"]["source"] == "checkout"
    assert event["payload"]["custom_details"]["details"]["gateway"] == "mercadopago"
    assert event["links"] == [{"href": "https://runbooks.example/payments", "text": "Runbook (runbooks.example)"}]


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_pagerduty_follow_ups_carry_only_the_key(action):
    event = json.loads(PAGERDUTY.build(delivery(action)).body)
    assert event == {"routing_key": fake.PAGERDUTY_KEY, "event_action": action, "dedup_key": "pgalert-abcd1234-7"}


def test_pagerduty_limits_hold_for_huge_unicode_alerts():
    request = PAGERDUTY.build(delivery(**HUGE))
    event = json.loads(request.body)
    assert len(event["payload"]["summary"]) <= 1024 and event["payload"]["summary"].startswith("💥 Ünïcödé")
    assert len(request.body) <= 512 * 1024
    assert fake.pagerduty("/v2/enqueue", {}, {}, request.body)[0] == 202


def test_pagerduty_eu_endpoint_is_used_when_configured():
    assert PagerDuty("k", EU_EVENTS_URL).build(delivery()).url == EU_EVENTS_URL


@pytest.mark.parametrize(("status", "outcome"), [(202, "succeeded"), (400, "failed"), (429, "retry"), (500, "retry"), (503, "retry")])
def test_pagerduty_judge(status, outcome):
    verdict = PAGERDUTY.judge(delivery(), HttpResponse(status, {}, b'{"status":"success","dedup_key":"pgalert-abcd1234-7"}'))
    assert verdict.outcome == outcome
    if outcome == "succeeded":
        assert verdict.reference == "pgalert-abcd1234-7"


def test_pagerduty_garbage_success_body_still_succeeds():
    assert PAGERDUTY.judge(delivery(), HttpResponse(202, {}, b"\x00not json")).outcome == "succeeded"


# ---- Opsgenie -----------------------------------------------------------------------------------------------

def test_opsgenie_create():
    request = OPSGENIE.build(delivery(provider="opsgenie", severity="warning", priority="P1"))
    body = json.loads(request.body)
    assert request.url == "https://api.opsgenie.com/v2/alerts"
    assert request.headers["Authorization"] == f"GenieKey {fake.OPSGENIE_KEY}"
    assert body["alias"] == "pgalert-abcd1234-7" and body["priority"] == "P2" and body["entity"] == "checkout"
    assert fake.opsgenie("/v2/alerts", {}, {"authorization": request.headers["Authorization"]}, request.body)[0] == 202


def test_opsgenie_limits_hold_for_huge_alerts():
    request = OPSGENIE.build(delivery(provider="opsgenie", **HUGE))
    body = json.loads(request.body)
    assert len(body["message"]) == 130 and len(body["description"]) == 15000
    assert fake.opsgenie("/v2/alerts", {}, {"authorization": request.headers["Authorization"]}, request.body)[0] == 202


@pytest.mark.parametrize(("action", "verb"), [("acknowledge", "acknowledge"), ("resolve", "close")])
def test_opsgenie_follow_ups_go_by_alias(action, verb):
    request = OPSGENIE.build(delivery(action, "opsgenie", {"by": "alice", "note": "on it"}))
    assert request.url == f"https://api.opsgenie.com/v2/alerts/pgalert-abcd1234-7/{verb}?identifierType=alias"
    assert json.loads(request.body) == {"user": "alice", "source": "pgalert", "note": "on it"}


def test_jsm_speaks_opsgenies_contract_at_atlassians_address_with_its_own_key():
    jsm = JiraServiceManagement(fake.JSM_KEY)
    create = jsm.build(delivery(provider="jsm", severity="warning"))
    assert create.url == "https://api.atlassian.com/jsm/ops/integration/v2/alerts"
    assert create.headers["Authorization"] == f"GenieKey {fake.JSM_KEY}"
    assert json.loads(create.body) == json.loads(OPSGENIE.build(delivery(provider="opsgenie", severity="warning")).body)
    close = jsm.build(delivery("resolve", "jsm", {"by": "alice"}))
    assert close.url == "https://api.atlassian.com/jsm/ops/integration/v2/alerts/pgalert-abcd1234-7/close?identifierType=alias"
    headers = {"authorization": create.headers["Authorization"]}
    assert fake.jsm("/jsm/ops/integration/v2/alerts", {}, headers, create.body)[0] == 202
    assert fake.jsm("/jsm/ops/integration/v2/alerts", {}, {"authorization": f"GenieKey {fake.OPSGENIE_KEY}"}, create.body)[0] == 401
    assert jsm.name == "jsm" and jsm.secrets() == (fake.JSM_KEY,)


def test_opsgenie_reference_is_the_request_id():
    reply = HttpResponse(202, {}, b'{"result":"Request will be processed","took":0.1,"requestId":"r-1"}')
    assert OPSGENIE.judge(delivery(provider="opsgenie"), reply).reference == "r-1"
    assert OPSGENIE.judge(delivery(provider="opsgenie"), HttpResponse(422, {}, b"{}")).outcome == "failed"


# ---- Slack --------------------------------------------------------------------------------------------------

def test_slack_message_is_readable_and_escaped():
    message = json.loads(SLACK.build(delivery(provider="slack", title="<b>&", message="x > y")).body)
    assert message["text"].startswith(":red_circle: [critical] &lt;b&gt;&amp;")
    assert message["blocks"][0]["type"] == "header"
    assert message["blocks"][1]["text"]["text"] == "x &gt; y"
    facts = " ".join(f["text"] for f in message["blocks"][2]["fields"])
    assert "critical (P0)" in facts and "`payment_failure`" in facts and "checkout" in facts
    assert message["blocks"][3]["elements"][0]["url"] == "https://runbooks.example/payments"


def test_slack_buttons_only_when_serve_can_answer_them_and_follow_ups_say_where():
    plain = json.loads(SLACK.build(delivery(provider="slack")).body)
    assert not any(b.get("block_id") == "pgalert_lifecycle" for b in plain["blocks"])
    interactive = Slack(SLACK.webhook_url, interactive=True)
    blocks = json.loads(interactive.build(delivery(provider="slack")).body)["blocks"]
    [buttons] = [b for b in blocks if b.get("block_id") == "pgalert_lifecycle"]
    assert [(e["action_id"], e["value"]) for e in buttons["elements"]] == \
        [("pgalert_acknowledge", "pgalert-abcd1234-7"), ("pgalert_resolve", "pgalert-abcd1234-7")]
    assert blocks[-1]["type"] == "context"  # the buttons sit above the alert's id line
    ack = json.loads(SLACK.build(delivery("acknowledge", "slack", {"by": "Alice", "via": "pagerduty"})).body)
    assert ack["text"].startswith(":eyes: *Acknowledged* by Alice in PagerDuty:")
    by_sql = json.loads(SLACK.build(delivery("resolve", "slack", {"by": "bob", "via": "sql"})).body)
    assert by_sql["text"].startswith(":white_check_mark: *Resolved* by bob:")


def test_slack_limits_hold_for_huge_alerts():
    body = SLACK.build(delivery(provider="slack", **HUGE)).body
    assert fake.slack(fake.SLACK_PATH.removeprefix("/slack"), {}, {}, body) == (200, {"Content-Type": "text/plain"}, b"ok")
    message = json.loads(body)
    assert all(len((b.get("text") or {}).get("text", "")) <= 3000 for b in message["blocks"])


def test_slack_digest_has_a_line_per_delivery_within_slack_limits():
    many = [Delivery(n, 1, "slack", ("trigger", "acknowledge", "resolve", "notify")[n % 4], "", {"by": "ana"}, "k",
                     alert(id=n, severity=("critical", "warning")[n % 2], **({"title": HUGE["title"]} if n % 7 else {})))
            for n in range(1, 101)]
    body = SLACK.build_digest(many).body
    assert fake.slack(fake.SLACK_PATH.removeprefix("/slack"), {}, {}, body)[0] == 200  # the fake checks the limits
    message = json.loads(body)
    assert message["blocks"][0]["text"]["text"] == "100 alert updates (50 critical, 50 warning)"
    lines = [line for block in message["blocks"][1:-1] for line in block["text"]["text"].split("\n")]
    assert [int(line.split("#", 1)[1].split()[0]) for line in lines] == list(range(1, 101))
    assert all(len(line) <= 300 for line in lines)
    assert all(len(b["text"]["text"]) <= 3000 for b in message["blocks"][1:-1]) and len(message["blocks"]) <= 50
    with pytest.raises(ValueError, match="1 to 100"):
        SLACK.build_digest([*many, many[0]])


@pytest.mark.parametrize(("action", "context", "expected"), [
    ("acknowledge", {"by": "alice", "note": "on it"}, ":eyes: *Acknowledged* by alice: Payments failing (alert #7)\n>on it"),
    ("resolve", {"by": "bob"}, ":white_check_mark: *Resolved* by bob: Payments failing (alert #7)"),
    ("resolve", {"by": "bob", "false_positive": True}, ":white_check_mark: *Resolved as a false positive* by bob: Payments failing (alert #7)"),
])
def test_slack_follow_ups(action, context, expected):
    assert json.loads(SLACK.build(delivery(action, "slack", context)).body)["text"] == expected


@pytest.mark.parametrize(("status", "body", "outcome"), [
    (200, b"ok", "succeeded"), (200, b"<html>captive portal</html>", "failed"), (404, b"channel_not_found", "failed"),
    (410, b"channel_is_archived", "failed"), (429, b"rate_limited", "retry"), (500, b"", "retry"),
])
def test_slack_judge(status, body, outcome):
    verdict = SLACK.judge(delivery(provider="slack"), HttpResponse(status, {"retry-after": "7"}, body))
    assert verdict.outcome == outcome
    if status == 429:
        assert verdict.retry_after == 7 and verdict.pause_provider


def test_slack_secret_path_is_among_its_secrets():
    assert fake.SLACK_PATH in SLACK.secrets()


# ---- Sentry -------------------------------------------------------------------------------------------------

def test_sentry_dsn_becomes_an_envelope_url():
    target = parse_sentry_target("https://abc@o1.ingest.sentry.io/123")
    assert (target.envelope_url, target.public_key) == ("https://o1.ingest.sentry.io/api/123/envelope/", "abc")
    assert parse_sentry_target("http://k@localhost:9000/sentry/42").envelope_url == "http://localhost:9000/sentry/api/42/envelope/"


def test_sentry_webhook_url_may_be_a_dsn_or_an_envelope_url():
    assert parse_sentry_target(webhook_url="https://abc@sentry.io/5").public_key == "abc"
    target = parse_sentry_target(webhook_url="https://sentry.io/api/5/envelope/?sentry_key=abc&sentry_version=7")
    assert target.public_key == "abc" and target.envelope_url == "https://sentry.io/api/5/envelope/"


@pytest.mark.parametrize("value", ["not a url", "https://sentry.io/hooks/123", "https://abc@sentry.io/not-a-number"])
def test_sentry_bad_urls_are_explained(value):
    with pytest.raises(ValueError, match="SENTRY_WEBHOOK_URL"):
        parse_sentry_target(webhook_url=value)


def test_sentry_envelope():
    request = SENTRY.build(delivery(provider="sentry", severity="warning"))
    header, item_header, item = request.body.rstrip(b"\n").split(b"\n")
    event = json.loads(item)
    assert json.loads(item_header) == {"type": "event", "length": len(item)}
    assert json.loads(header)["event_id"] == event["event_id"] == event_id(delivery())
    assert event["level"] == "warning" and event["fingerprint"] == ["pgalert", "payment_failure:checkout"]
    assert request.headers["X-Sentry-Auth"].endswith(f"sentry_key={fake.SENTRY_KEY}")
    headers = {k.lower(): v for k, v in request.headers.items()}
    assert fake.sentry(f"/api/{fake.SENTRY_PROJECT}/envelope/", {}, headers, request.body)[0] == 200
    assert SENTRY.build(delivery("resolve", "sentry")) is None


def test_sentry_event_id_is_stable_and_32_hex():
    assert event_id(delivery()) == event_id(delivery()) != event_id(delivery("resolve"))
    assert len(event_id(delivery())) == 32 and event_id(delivery()) == event_id(delivery()).lower()


def test_sentry_rate_limit_header_pauses_the_provider():
    reply = HttpResponse(429, {"x-sentry-rate-limits": "60:transaction:key, 2700:default;error;security:organization"}, b"")
    verdict = SENTRY.judge(delivery(provider="sentry"), reply)
    assert (verdict.outcome, verdict.retry_after, verdict.pause_provider) == ("retry", 2700, True)


# ---- webhook ------------------------------------------------------------------------------------------------

def test_webhook_verifies_with_the_standard_webhooks_library():
    from standardwebhooks.webhooks import Webhook as Receiver
    from standardwebhooks.webhooks import WebhookVerificationError

    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    request = Webhook("https://example.test/hook", secret).build(delivery("resolve", "webhook"))
    headers = {k: v for k, v in request.headers.items() if k.startswith("webhook-")}
    payload = Receiver(secret).verify(request.body, headers)  # raises unless signed by this secret, recently
    assert payload["event"] == "resolve" and headers["webhook-id"] == "pgalert-abcd1234-7/11"
    with pytest.raises(WebhookVerificationError):
        Receiver(secret).verify(request.body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Receiver("whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY").verify(request.body, headers)
    stale = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 3600)}
    with pytest.raises(WebhookVerificationError):
        Receiver(secret).verify(request.body, stale)


def test_a_webhook_secret_no_library_could_use_is_refused_at_start():
    from dispatcher.providers import ProviderConfigError, providers_from_env

    with pytest.raises(ProviderConfigError, match="must be a Standard Webhooks secret"):
        providers_from_env({"PGALERT_WEBHOOK_URL": "https://example.test/hook", "PGALERT_WEBHOOK_SECRET": "whsec_"})


def test_webhook_is_signed_and_verifiable():
    secret = "whsec_czNjcmV0"  # a secret of the documented form, which the legacy header is keyed by as it is
    hook = Webhook("https://example.test/hook", secret)
    request = hook.build(delivery("resolve", "webhook", {"by": "bob"}), now=1_700_000_000)
    assert verify(secret, request.headers["X-Pgalert-Signature"], request.body, now=1_700_000_010)
    assert not verify(secret, request.headers["X-Pgalert-Signature"], request.body + b" ", now=1_700_000_010)
    assert not verify("wrong", request.headers["X-Pgalert-Signature"], request.body, now=1_700_000_010)
    assert not verify(secret, request.headers["X-Pgalert-Signature"], request.body, now=1_700_009_999)  # replay
    assert json.loads(request.body)["event"] == "resolve"
    assert sign(secret, 1, b"x") != sign(secret, 2, b"x")


# ---- text ---------------------------------------------------------------------------------------------------

def test_truncation_never_splits_a_character():
    assert truncate("héllo wörld", 6) == "héllo…"
    assert truncate("short", 10) == "short"
    cut = truncate_utf8("€" * 10, 10)
    assert cut.encode() and len(cut.encode()) <= 10 and cut.startswith("€€")


# ---- Microsoft Teams ----------------------------------------------------------------------------------------

def teams_reply(body: bytes):
    return fake.teams(fake.TEAMS_PATH.removeprefix("/teams"), {"sig": [fake.TEAMS_SIG]}, {}, body)


def test_teams_trigger_is_one_adaptive_card_with_the_facts_and_the_runbook():
    request = TEAMS.build(delivery(provider="teams"))
    assert request.url == TEAMS_URL and teams_reply(request.body) == (202, {}, b"")
    message = json.loads(request.body)
    [attachment] = message["attachments"]
    card = attachment["content"]
    assert (message["type"], attachment["contentType"], card["type"]) == \
        ("message", "application/vnd.microsoft.card.adaptive", "AdaptiveCard")
    assert card["body"][0] == {"type": "TextBlock", "text": "P0 Payments failing", "wrap": True, "weight": "Bolder",
                               "size": "Medium", "color": "Attention"}
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["Severity"] == "critical (P0)" and facts["Source"] == "checkout"
    assert facts["Alert"] == "#7 · payment_failure:checkout"
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Runbook (runbooks.example)", "url": "https://runbooks.example/payments"}]


def test_teams_limits_hold_for_huge_alerts():
    body = TEAMS.build(delivery(provider="teams", **HUGE)).body
    assert len(body) <= fake.TEAMS_MESSAGE_MAX and teams_reply(body)[0] == 202
    card = json.loads(body)["attachments"][0]["content"]
    assert card["body"][0]["text"].startswith("P0 💥 Ünïcödé")


@pytest.mark.parametrize(("action", "context", "expected"), [
    ("acknowledge", {"by": "alice", "note": "on it", "via": "pagerduty"}, "👀 Acknowledged by alice in PagerDuty: Payments failing"),
    ("resolve", {"by": "bob"}, "✅ Resolved by bob: Payments failing"),
    ("resolve", {"by": "bob", "false_positive": True}, "✅ Resolved as a false positive by bob: Payments failing"),
    ("notify", {"person": "Carol", "reason": "level 2 of payments"}, "🚨 Carol, level 2 of payments: Payments failing (critical)"),
])
def test_teams_follow_ups_are_cards_that_say_who_and_where(action, context, expected):
    body = TEAMS.build(delivery(action, "teams", context)).body
    assert teams_reply(body)[0] == 202
    card = json.loads(body)["attachments"][0]["content"]
    assert card["body"][0]["text"] == expected and card["body"][-1]["text"] == "pgalert alert #7"


@pytest.mark.parametrize(("status", "outcome"), [(202, "succeeded"), (200, "succeeded"), (400, "failed"), (401, "failed"),
                                                 (404, "failed"), (429, "retry"), (502, "retry")])
def test_teams_judge(status, outcome):
    verdict = TEAMS.judge(delivery(provider="teams"), HttpResponse(status, {"retry-after": "5"}, b""))
    assert verdict.outcome == outcome
    if status == 429:
        assert verdict.retry_after == 5 and verdict.pause_provider


def test_teams_url_and_its_signature_are_secrets():
    assert {TEAMS_URL, fake.TEAMS_SIG} <= set(TEAMS.secrets())


# ---- Email --------------------------------------------------------------------------------------------------

MAIL = Mail("smtps://smtp.example.com", "pgalert <alerts@example.com>", ("ops@example.com", "lead@example.org"), "alerts", "pw")


def mail_of(request) -> email.message.EmailMessage:
    return email.parser.BytesParser(policy=email.policy.default).parsebytes(request.message)


def test_email_trigger_is_plain_text_and_html_with_the_facts():
    request = MAIL.build(delivery(provider="email"))
    assert (request.url, request.mail_from, request.recipients, request.username) == (
        "smtps://smtp.example.com", "alerts@example.com", ("ops@example.com", "lead@example.org"), "alerts")
    assert b"\r\n" in request.message and b"\n" not in request.message.replace(b"\r\n", b"")  # SMTP wants CRLF
    message = mail_of(request)
    assert message["Subject"] == "[P0 critical] Payments failing"
    assert (message["From"], message["To"]) == ("pgalert <alerts@example.com>", "ops@example.com, lead@example.org")
    assert message["Message-ID"] == "<pgalert-abcd1234-7@example.com>" and message["In-Reply-To"] is None
    assert (message["Auto-Submitted"], message["Importance"], message["X-Pgalert-Alert-Id"]) == ("auto-generated", "high", "7")
    text = message.get_body("plain").get_content()
    assert "Severity: critical (P0)" in text and "Message: 3 failures in 5 min" in text and "gateway: mercadopago" in text
    assert "Runbook (runbooks.example): https://runbooks.example/payments" in text
    page = message.get_body("html").get_content()
    assert '<a href="https://runbooks.example/payments">Runbook (runbooks.example)</a>' in page and "<th" in page


@pytest.mark.parametrize(("action", "context", "heading"), [
    ("acknowledge", {"by": "alice", "note": "on it", "via": "pagerduty"}, "Acknowledged by alice in PagerDuty"),
    ("resolve", {"by": "bob", "false_positive": True}, "Resolved as a false positive by bob"),
    ("notify", {"person": "Carol", "reason": "level 2 of payments"}, "Carol, level 2 of payments"),
])
def test_email_follow_ups_reply_in_the_alert_thread(action, context, heading):
    message = mail_of(MAIL.build(delivery(action, "email", context)))
    assert message["Subject"] == "Re: [P0 critical] Payments failing"
    assert message["In-Reply-To"] == message["References"] == "<pgalert-abcd1234-7@example.com>"
    assert message["Message-ID"] == "<pgalert-abcd1234-7.11@example.com>"  # its own, stable across retries
    assert message.get_body("plain").get_content().startswith(heading + "\r\n")


def test_an_email_page_goes_to_the_person_on_call_when_their_address_is_known():
    assert MAIL.build(delivery("notify", "email", {"person": "Carol", "email": "carol@example.com"})).recipients == ("carol@example.com",)
    assert MAIL.build(delivery("notify", "email", {"person": "Dan"})).recipients == MAIL.recipients
    # an address that could add recipients is not taken: the channel's list is
    assert MAIL.build(delivery("notify", "email", {"email": "x@example.com, y@example.com"})).recipients == MAIL.recipients


def test_email_escapes_html_and_keeps_the_subject_one_line():
    request = MAIL.build(delivery(provider="email", title="<script>x</script>\r\nBcc: victim@example.com", message="a < b & c"))
    message = mail_of(request)
    assert message["Bcc"] is None and message["Subject"] == "[P0 critical] <script>x</script> Bcc: victim@example.com"
    page = message.get_body("html").get_content()
    assert "<script>" not in page and "&lt;script&gt;" in page and "a &lt; b &amp; c" in page


def test_email_of_a_huge_alert_is_bounded_and_readable():
    request = MAIL.build(delivery(provider="email", **HUGE))
    message = mail_of(request)
    assert len(request.message) < 400_000 and message["Subject"].startswith("[P0 critical] 💥 Ünïcödé")
    assert len(message["Subject"]) <= 200


@pytest.mark.parametrize(("code", "outcome"), [(250, "succeeded"), (421, "retry"), (451, "retry"), (452, "retry"),
                                               (535, "failed"), (550, "failed"), (554, "failed")])
def test_email_judge_by_smtp_reply_code(code, outcome):
    verdict = MAIL.judge(delivery(provider="email"), HttpResponse(code, {}, f"{code} 4.0.0 something".encode()))
    assert verdict.outcome == outcome
    if outcome == "succeeded":
        assert verdict.reference == "<pgalert-abcd1234-7@example.com>"
    else:
        assert verdict.error == f"SMTP {code}: {code} 4.0.0 something"


def test_email_password_is_the_secret():
    assert MAIL.secrets() == ("pw",)


# ---- what a writer sends never speaks for pgalert (#22, 11) ---------------------------------------------------

LIVE_SLACK = ("<!channel>", "<!here>", "<!everyone>", "<@U0BOSS>", "<https://evil.example/ack|Acknowledge>")
DISGUISED_LINKS = [{"href": "https://evil.example/ack", "text": label}
                   for label in ("Acknowledge", " acknowledge! ", "ＡＣＫ", "Resolve", "Аcknowledge")]  # fullwidth, Cyrillic А


def hostile(**extra):
    text = " ".join(LIVE_SLACK) + " [Acknowledge](https://evil.example/md) **urgent**"
    return {"title": text, "message": text, "source": text, "details": {"links": DISGUISED_LINKS}, **extra}


@pytest.mark.parametrize("action", ["trigger", "acknowledge", "resolve", "notify"])
def test_a_writers_mentions_and_links_are_never_live_in_slack(action):
    context = {"by": "<!channel>", "note": "<@U0BOSS>", "person": "<!here>", "reason": "<!everyone>"}
    message = json.loads(Slack("http://hooks.local/x", interactive=True).build(delivery(action, "slack", context, **hostile())).body)
    mrkdwn = [message["text"]]  # the notification's text, and every mrkdwn element (plain_text shows as typed)

    def collect(node):
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn":
                mrkdwn.append(node["text"])
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)
    collect(message["blocks"])
    assert len(mrkdwn) >= 2
    for live in LIVE_SLACK:
        assert not any(live in text for text in mrkdwn), (live, message["text"])
    buttons = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    own = [e for e in buttons if e.get("action_id", "").startswith("pgalert_")]
    assert all(e["text"]["text"] not in {o["text"]["text"] for o in own} and "(evil.example)" in e["text"]["text"]
               for e in buttons if "url" in e)
    if action == "trigger":
        assert len(own) == 2 and len(buttons) == 2 + len(DISGUISED_LINKS)


def test_a_writers_link_never_reads_as_an_action_in_teams_pagerduty_or_email():
    own_labels = {"Acknowledge", "Resolve"}
    card = json.loads(TEAMS.build(delivery(provider="teams", **hostile())).body)["attachments"][0]["content"]
    titles = [a["title"] for a in card["actions"]]
    texts = json.dumps(card["body"])
    assert "[Acknowledge](" not in texts and "\\\\[Acknowledge\\\\](" in texts and "**urgent**" not in texts
    pd_links = json.loads(PAGERDUTY.build(delivery(**hostile())).body)["links"]
    mail = mail_of(MAIL.build(delivery(provider="email", **hostile())))
    html = mail.get_body("html").get_content()
    for labels in (titles, [link["text"] for link in pd_links]):
        assert len(labels) >= 5 and not own_labels & set(labels)
        assert all(label.endswith("(evil.example)") for label in labels)
        assert sum(label.startswith("Link: ") for label in labels) == 4  # the Cyrillic one is shown with its host only
    assert ">Acknowledge<" not in html and ">Link: Acknowledge (evil.example)<" in html


@pytest.mark.parametrize("provider", [
    PAGERDUTY, OPSGENIE, SLACK, TEAMS, SENTRY, MAIL, Webhook("https://h.example/x", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    JiraServiceManagement(fake.JSM_KEY), Unconfigured("x", "unset")], ids=lambda p: type(p).__name__)
def test_every_provider_says_how_many_deliveries_a_request_carries(provider):
    """The worker asks digest_max and build_digest of every provider, through the Provider protocol."""
    if isinstance(provider, Slack):
        assert provider.digest_max > 1
        assert json.loads(provider.build_digest([delivery(provider="slack")] * 2).body)["blocks"]
    else:
        assert provider.digest_max == 1
        with pytest.raises(TypeError, match="one delivery a request"):
            provider.build_digest([delivery()] * 2)
