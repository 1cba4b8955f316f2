"""The pure half of `pgalert serve`: signatures and tokens, and what each sender's payload means."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re

import pytest

from dispatcher.inbound import translate, verify
from dispatcher.inbound.proxies import tcp_peer, with_tcp_peer
from dispatcher.inbound.translate import BadPayload

# Slack's own worked example ("Verifying requests from Slack"): secret, timestamp, body and signature
SLACK_DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_DOC_TIMESTAMP = "1531420618"
SLACK_DOC_BODY = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
                  b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
                  b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
                  b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
SLACK_DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def test_slacks_documented_example_verifies_and_any_change_does_not():
    at = int(SLACK_DOC_TIMESTAMP)
    assert verify.slack_signature_problem(SLACK_DOC_BODY, SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, SLACK_DOC_SECRET, at) is None
    assert "does not match" in verify.slack_signature_problem(SLACK_DOC_BODY + b"x", SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, SLACK_DOC_SECRET, at)
    assert "does not match" in verify.slack_signature_problem(SLACK_DOC_BODY, SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, "other", at)
    assert "5 minutes" in verify.slack_signature_problem(SLACK_DOC_BODY, SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, SLACK_DOC_SECRET, at + 301)
    assert verify.slack_signature_problem(SLACK_DOC_BODY, SLACK_DOC_TIMESTAMP, SLACK_DOC_SIGNATURE, SLACK_DOC_SECRET, at + 299) is None
    assert "missing" in verify.slack_signature_problem(SLACK_DOC_BODY, None, SLACK_DOC_SIGNATURE, SLACK_DOC_SECRET, at)
    assert "not a number" in verify.slack_signature_problem(SLACK_DOC_BODY, "soon", SLACK_DOC_SIGNATURE, SLACK_DOC_SECRET, at)


def pd_signature(body: bytes, secret: str) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(("header", "secrets", "ok"), [
    (pd_signature(b"{}", "s1"), ["s1"], True),
    (pd_signature(b"{}", "s1"), ["s0", "s1"], True),  # rotation: the new secret is configured beside the old
    (f"v1={'a' * 64},{pd_signature(b'{}', 's1')}", ["s1"], True),  # several values, one matches
    (f"{pd_signature(b'{}', 's1')}".upper().replace("V1=", "v1="), ["s1"], True),  # hex case does not matter
    (pd_signature(b"{} ", "s1"), ["s1"], False),  # a different body
    (pd_signature(b"{}", "s2"), ["s1"], False),
    (pd_signature(b"{}", "s1").replace("v1=", "v2="), ["s1"], False),  # an unknown scheme
    ("", ["s1"], False), (None, ["s1"], False), (pd_signature(b"{}", "s1"), [], False),
])
def test_pagerduty_signatures(header, secrets, ok):
    assert verify.pagerduty_signature_ok(b"{}", header, secrets) is ok


def test_tokens_are_random_prefixed_and_kept_only_as_sha256():
    first, second = verify.new_token(), verify.new_token()
    assert first != second and first.startswith("pga_") and len(first) > 40
    assert verify.token_sha256(first) == hashlib.sha256(first.encode()).digest() and len(verify.token_sha256(first)) == 32
    assert verify.bearer_token(f"Bearer {first}") == first and verify.bearer_token(f"bearer  {first} ") == first
    assert verify.bearer_token("Basic abc") is None and verify.bearer_token("Bearer ") is None and verify.bearer_token(None) is None
    assert verify.shared_token_ok("abc", "abc") and not verify.shared_token_ok("abd", "abc")
    assert not verify.shared_token_ok(None, "abc") and not verify.shared_token_ok("", "")


def test_an_alertmanager_alert_becomes_a_pgalert_alert():
    [alert] = translate.alertmanager_alerts({"version": "4", "receiver": "pgalert", "externalURL": "http://am", "alerts": [{
        "status": "firing", "fingerprint": "c0ffee",
        "labels": {"alertname": "DiskFull", "severity": "Warning", "instance": "db-1", "job": "node"},
        "annotations": {"summary": "Disk 95% full", "description": "/var", "runbook_url": "https://rb/disk"},
        "startsAt": "2026-11-30T10:00:00.123Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/g"}]})
    assert alert["alert_type"] == "DiskFull" and alert["severity"] == "warning"
    assert (alert["title"], alert["message"], alert["source"]) == ("Disk 95% full", "/var", "db-1")
    assert alert["dedup_key"] == "alertmanager:c0ffee" and alert["instance"] == "c0ffee@2026-11-30T10:00:00.123000+00:00"
    assert alert["occurred_at"] == "2026-11-30T10:00:00.123000+00:00" and alert["resolved_at"] is None
    assert alert["details"]["runbook_url"] == "https://rb/disk" and alert["details"]["receiver"] == "pgalert"
    assert alert["details"]["links"] == [{"href": "http://prom/g", "text": "Source"}]


@pytest.mark.parametrize(("labels", "default", "severity"), [
    ({"severity": "critical"}, "warning", "critical"), ({"severity": "PAGE"}, "warning", "critical"),
    ({"severity": "info"}, "warning", "info"), ({"severity": "whatever"}, "info", "info"), ({}, "critical", "critical"),
])
def test_alertmanager_severity_from_the_label_or_the_default(labels, default, severity):
    alert = {"status": "firing", "labels": {"alertname": "a", **labels}, "annotations": {}, "fingerprint": "f"}
    assert translate.alertmanager_alerts({"version": "4", "alerts": [alert]}, default)[0]["severity"] == severity


def test_an_alert_without_a_fingerprint_keys_on_its_label_set():
    def key(labels):
        return translate.alertmanager_alerts({"alerts": [{"status": "firing", "labels": labels}]})[0]["dedup_key"]
    assert key({"alertname": "a", "x": "1"}) == key({"x": "1", "alertname": "a"}) != key({"alertname": "a", "x": "2"})


@pytest.mark.parametrize(("document", "reason"), [
    ([], "must be a JSON object"),
    ({"version": "3", "alerts": []}, "version"),
    ({"alerts": []}, "1 to 1000"),
    ({"receiver": "a\x00b", "alerts": [{"status": "firing", "labels": {}}]}, "receiver contains a NUL"),
])
def test_bad_alertmanager_payloads_say_why(document, reason):
    with pytest.raises(BadPayload, match=reason):
        translate.alertmanager_alerts(document)


@pytest.mark.parametrize(("alert", "reason"), [
    ({"status": "firing", "labels": []}, "labels"),
    ({"status": "pending", "labels": {}}, "firing or resolved"),
    ({"status": "firing", "labels": {}, "startsAt": "2026-11-30 10:00"}, "time zone"),
    ("firing", "must be a JSON object"),
])
def test_a_bad_alert_of_an_alertmanager_group_is_rejected_alone(alert, reason):
    good = {"status": "firing", "labels": {"alertname": "a"}, "fingerprint": "f"}
    first, bad, last = translate.alertmanager_alerts({"alerts": [good, alert, good]})
    assert first["dedup_key"] == last["dedup_key"] == "alertmanager:f"
    assert isinstance(bad, translate.Rejected) and reason in bad.reason and "alerts[1]" in bad.reason


def test_the_generic_api_takes_one_alert_or_a_list():
    one = translate.api_alerts({"alert_type": "x", "severity": "P1", "title": "t"})
    assert one == [{"status": "firing", "alert_type": "x", "dedup_key": None, "source": "", "details": {},
                    "severity": "P1", "title": "t", "message": "", "occurred_at": None}]
    many = translate.api_alerts([{"alert_type": "x", "severity": "info", "title": "t"}, {"status": "resolved", "dedup_key": "k"}])
    assert [a["status"] for a in many] == ["firing", "resolved"] and many[1]["alert_type"] is None
    assert translate.api_alerts([{"alert_type": "x", "severity": "info", "title": "t"}, {"status": "resolved"}])[1] == \
        translate.Rejected("alert 1.alert_type is required")
    assert translate.api_alerts([{"alert_type": "x", "severity": "loud", "title": "t"}]) == \
        [translate.Rejected("alert 0.severity must be one of critical, warning, info, P0, P1, P2")]
    with pytest.raises(BadPayload, match="1 to 1000"):
        translate.api_alerts([{}] * 1001)


def pd(event_type: str, **data) -> dict:
    return {"event": {"id": "01ABC", "event_type": event_type, "resource_type": "incident",
                      "occurred_at": "2026-11-30T10:02:00Z", "agent": {"summary": "Alice"},
                      "data": {"id": "PGR0VU2", **data}}}


def test_pagerduty_events_map_to_actions_and_the_rest_is_ignored():
    ack = translate.pagerduty_action(pd("incident.acknowledged", incident_key="pgalert-0a1b2c3d-7"))
    # the receipt is the signed event id, never the unsigned X-Webhook-Id header
    assert (ack.action, ack.receipt_id, ack.provider_key, ack.reference, ack.actor) == \
        ("acknowledge", "01ABC", "pgalert-0a1b2c3d-7", "PGR0VU2", "Alice")
    assert ack.occurred_at == "2026-11-30T10:02:00+00:00"
    assert [translate.pagerduty_action(pd(t)).action for t in
            ("incident.unacknowledged", "incident.reopened", "incident.annotated", "incident.triggered")] == \
        ["unacknowledge", "reopen", None, None]
    with pytest.raises(BadPayload, match="event must be a JSON object"):
        translate.pagerduty_action({"messages": []})
    without_id = pd("incident.resolved")
    del without_id["event"]["id"]
    with pytest.raises(BadPayload, match=r"event\.id is required"):
        translate.pagerduty_action(without_id)


def test_opsgenie_times_come_in_any_epoch_unit():
    expected = "2026-11-30T10:00:00+00:00"
    for value in (1796032800, 1796032800_000, 1796032800_000_000, 1796032800_000_000_000):
        assert translate.epoch_time(value) == expected
    assert translate.epoch_time(None) is None and translate.epoch_time(True) is None and translate.epoch_time(-5) is None


def test_opsgenie_actions_by_alias():
    close = translate.opsgenie_action({"action": "Close", "alert": {"alertId": "a1", "alias": "pgalert-0a1b2c3d-7",
                                                                    "username": "bob", "updatedAt": 1796032800_000_000_000}})
    assert (close.action, close.provider_key, close.actor, close.receipt_id) == \
        ("resolve", "pgalert-0a1b2c3d-7", "bob", "a1/Close/1796032800000000000")
    assert translate.opsgenie_action({"action": "AddNote", "alert": {}}).action is None
    with pytest.raises(BadPayload, match="alias is required"):
        translate.opsgenie_action({"action": "Acknowledge", "alert": {"alertId": "a1"}})


def test_a_slack_click_and_the_message_it_leaves():
    payload = {"type": "block_actions", "user": {"id": "U1", "username": "ana"}, "response_url": "https://hooks.slack.com/x",
               "actions": [{"action_id": "pgalert_resolve", "value": "pgalert-0a1b2c3d-7", "action_ts": "1796032800.5"}],
               "message": {"text": "P0 down", "blocks": [
                   {"type": "header"},
                   {"type": "actions", "block_id": "pgalert_lifecycle", "elements": [
                       {"action_id": "pgalert_acknowledge"}, {"action_id": "pgalert_resolve"}]},
                   {"type": "actions", "elements": [{"url": "https://runbook"}]}]}}
    click = translate.slack_click(json.dumps(payload))
    assert (click.action, click.provider_key, click.member_id) == ("resolve", "pgalert-0a1b2c3d-7", "U1")
    assert click.as_action().occurred_at == "2026-11-30T10:00:00.500000+00:00"
    updated = translate.slack_updated_message(click.message, "resolved", "U1", "resolved")
    assert [b.get("block_id") for b in updated["blocks"] if b["type"] == "actions"] == [None]  # the runbook link stays
    assert updated["blocks"][-1]["elements"][0]["text"] == ":white_check_mark: Resolved by <@U1>"
    acked = translate.slack_updated_message(click.message, "acknowledged", "U1", "acknowledged")
    assert [e["action_id"] for e in acked["blocks"][1]["elements"]] == ["pgalert_resolve"]
    assert "already resolved" in translate.slack_updated_message(None, "already_resolved", "U1", "resolved")["blocks"][-1]["elements"][0]["text"]
    assert translate.slack_click(json.dumps({"type": "view_submission"})).action is None
    with pytest.raises(BadPayload):
        translate.slack_click("not json")


HOSTILE_VALUES = [
    (b'"a\\u0000b"', "NUL"),
    (b'"\\ud800"', "lone surrogate"),
    (b"1e999", "cannot store (1e999)"),
    (b"-1e999", "cannot store"),
    (b"NaN", "cannot store (NaN)"),
    (b"Infinity", "cannot store"),
    (b"1" * 5000, "cannot store (11111111111111111111...)"),
    (b"[" * 40 + b"1" + b"]" * 40, "nested deeper than 32"),
]


@pytest.mark.parametrize(("value", "reason"), HOSTILE_VALUES)
@pytest.mark.parametrize("place", ["title", "details", "label", "label key"])
def test_a_value_postgresql_cannot_store_rejects_only_its_alert(value, reason, place):
    """Each would have failed the whole request with a 500 (PostgreSQL refuses NUL and NaN, UTF-8 a lone
    surrogate, Python a 5,000-digit integer): now its alert alone is rejected, anywhere in the alert."""
    spot = {"title": b'"title": %s', "details": b'"details": {"x": %s}', "label": b'"labels": {"env": %s}',
            "label key": b'"labels": {%s: "1"}'}[place]
    if place == "label key" and not value.startswith(b'"'):
        value = b'"a\\u0000b"'
        reason = "NUL"
    bad = b'{"alert_type": "x", "severity": "info", "title": "t", ' + spot % value + b"}"
    good = b'{"alert_type": "x", "severity": "info", "title": "t"}'
    alerts = translate.api_alerts(translate.parse_json(b"[" + good + b", " + bad + b"]"))
    assert alerts[0]["title"] == "t"
    assert isinstance(alerts[1], translate.Rejected) and reason in alerts[1].reason and "alert 1" in alerts[1].reason


def test_a_body_too_deep_to_parse_or_of_a_bad_number_is_refused_whole():
    with pytest.raises(BadPayload, match="nested deeper"):
        translate.parse_json(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(BadPayload, match="not JSON"):
        translate.parse_json(b"\xff")


@pytest.mark.parametrize(("value", "reason"), HOSTILE_VALUES)
def test_a_provider_action_with_an_unstorable_value_is_refused_whole(value, reason):
    document = json.loads(json.dumps(pd("incident.acknowledged")))
    with_value = json.dumps(document).replace('"Alice"', value.decode()).encode()
    with pytest.raises(BadPayload, match=reason.split(" (")[0]):
        translate.pagerduty_action(translate.parse_json(with_value))
    opsgenie = b'{"action": "Acknowledge", "alert": {"alertId": "a", "alias": "k", "username": %s}}' % value
    with pytest.raises(BadPayload, match=reason.split(" (")[0]):
        translate.opsgenie_action(translate.parse_json(opsgenie))


def test_the_openapi_document_describes_what_each_status_carries():
    from dispatcher.inbound.openapi import openapi_document

    document = openapi_document(1 << 20)
    refs = re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(document))
    assert refs and set(refs) <= set(document["components"]["schemas"])  # every reference resolves
    for path in ("/v1/alerts", "/v1/alertmanager"):
        answers = document["paths"][path]["post"]["responses"]
        assert answers["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/Results")  # the results
        assert answers["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
        assert "408" in answers


# --- Twilio: what the signature covers is names and values run together, so it can be re-split (#35 item 10) ---

def twilio_signed_by(url: str, pairs: list[tuple[str, str]], token: str = "tw-token") -> str:
    import base64

    signed = url + "".join(name + value for name, value in sorted(pairs))
    return base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def resplits(pairs: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """Every way of moving the tail of one value into the next name that keeps the names' order, so the signed
    string, and so the signature, stay the same while the parameters change."""
    pairs = sorted(pairs)
    found = []
    for i in range(len(pairs) - 1):
        name, value = pairs[i]
        for cut in range(1, len(value)):
            moved = [*pairs[:i], (name, value[:-cut]), (value[-cut:] + pairs[i + 1][0], pairs[i + 1][1]),
                     *pairs[i + 2:]]
            if [n for n, _ in moved] == sorted(n for n, _ in moved) and len({n for n, _ in moved}) == len(moved):
                found.append(moved)
    return found


def test_a_resplit_twilio_request_still_verifies_but_has_the_same_receipt():
    url = "https://pgalert.example.com/v1/twilio/sms"
    captured = [("Body", "6 123"), ("From", "+14155550123"), ("MessageSid", "SM0123abcd"), ("To", "+15005550006")]
    signature = twilio_signed_by(url, captured)
    variants = resplits(captured)
    sids = {dict(v).get("MessageSid") for v in variants}
    assert len(variants) >= 3 and len(sids) >= 3  # the attack: the receipt Twilio's own id gave is not one
    for variant in variants:
        assert verify.twilio_signature_ok(url, variant, signature, "tw-token")
        assert verify.twilio_receipt(url, variant) == verify.twilio_receipt(url, captured)
    # a query string moved into a name changes the URL half, not the signed string: still one receipt
    voice = "https://pgalert.example.com/v1/twilio/voice?d=12"
    pressed = [("3CallSid", "CA1"), ("Digits", "6")]
    assert verify.twilio_receipt(voice, pressed) == verify.twilio_receipt(voice + "3", [("CallSid", "CA1"), ("Digits", "6")])
    # and two real requests are two receipts
    assert verify.twilio_receipt(url, captured) != verify.twilio_receipt(
        url, [*captured[:2], ("MessageSid", "SM0123abce"), captured[3]])
    assert verify.twilio_receipt(url, captured) != verify.twilio_receipt(url.replace("sms", "voice"), captured)


# (the socket's peer, X-Forwarded-For, FORWARDED_ALLOW_IPS) -> the client serve logs and limits sign-ins by
@pytest.mark.parametrize(("peer", "forwarded_for", "allowed", "client"), [
    ("127.0.0.1", "10.0.0.5", "127.0.0.1", "10.0.0.5"), ("127.0.0.1", "198.51.100.7, 10.0.0.5", "127.0.0.1", "10.0.0.5"),
    ("127.0.0.1", None, "127.0.0.1", "127.0.0.1"), ("203.0.113.9", "10.0.0.5", "127.0.0.1", "203.0.113.9"),
    ("203.0.113.9", "10.0.0.5", "*", "10.0.0.5"), ("::1", "2001:db8::7", "::1", "2001:db8::7"),
])
def test_serve_keeps_the_tcp_peer_apart_from_the_address_a_proxy_header_names(peer, forwarded_for, allowed, client):
    seen = {}

    async def app(scope, receive, send):
        seen.update(peer=tcp_peer(scope), client=scope["client"][0], scheme=scope["scheme"])

    headers = [(b"x-forwarded-proto", b"https")] + ([(b"x-forwarded-for", forwarded_for.encode())]
                                                    if forwarded_for else [])
    scope = {"type": "http", "client": (peer, 50000), "scheme": "http", "headers": headers, "path": "/"}
    asyncio.run(with_tcp_peer(app, allowed)(scope, None, None))
    believed = allowed == "*" or peer in allowed
    assert seen == {"peer": peer, "client": client, "scheme": "https" if believed else "http"}
    assert tcp_peer({"type": "http", "client": (peer, 1)}) is None  # not kept by serve: nobody is trusted
