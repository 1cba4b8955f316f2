"""A paged person answers from their phone, through `pgalert serve` (a login holding only monitoring_inbound):
Twilio's texts, keypresses and status callbacks signed as Twilio documents, and ntfy's Acknowledge button; the
pages themselves sent by a real dispatcher (a login holding only monitoring_dispatcher) to the local Twilio and
ntfy. Forged, replayed, expired and strangers' requests change nothing."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import pytest
import requests

from devtools.fake_providers import TWILIO_AUTH_TOKEN, FakeProviders
from devtools.serve import start_serve
from tests.helpers import child_environment, wait_until

ACTION_KEY = "k" * 40
ALICE = "+14155550123"


def twilio_signature(url: str, params: dict[str, str], token: str = TWILIO_AUTH_TOKEN) -> str:
    """As Twilio signs: HMAC-SHA1 of the URL and the sorted parameters, keyed by the Auth Token, in base64."""
    signed = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


class Serve:
    def __init__(self, url: str):
        self.url = url

    def twilio(self, path: str, params: dict[str, str] | list[tuple[str, str]], signature: str | None = None,
               headers: dict[str, str] | None = None) -> requests.Response:
        url = self.url + path
        return requests.post(url, data=urlencode(params), timeout=10, headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature if signature is not None else twilio_signature(url, dict(params)),
            **(headers or {})})


@pytest.fixture
def serve(login_url, tmp_path: Path) -> Iterator[Serve]:
    log = tmp_path / "serve.log"
    url = login_url("monitoring_inbound")
    # the public URL is the one the test posts to: what Twilio signs is the URL it called
    port_probe, base = start_serve(url, log, "--no-console", env={"TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
                                                                   "PGALERT_ACTION_KEY": ACTION_KEY},
                                   base_env=child_environment())
    port_probe.send_signal(signal.SIGTERM)
    port_probe.wait(15)
    process, base = start_serve(url, log, "--no-console", port=int(base.rsplit(":", 1)[1]),
                                env={"TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN, "PGALERT_ACTION_KEY": ACTION_KEY,
                                     "PGALERT_PUBLIC_URL": base}, base_env=child_environment())
    yield Serve(base)
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    assert TWILIO_AUTH_TOKEN not in log.read_text() and ACTION_KEY not in log.read_text()


@pytest.fixture
def paged(conn, fake: FakeProviders, serve: Serve, start_dispatcher):
    """Alice paged for a critical alert: a push, a text and a call at once (her rules), sent by the dispatcher
    with serve's public URL, so each can be answered."""
    start_dispatcher(env={**fake.env(), "PGALERT_PUBLIC_URL": serve.url, "PGALERT_ACTION_KEY": ACTION_KEY})
    alice = conn.execute("INSERT INTO monitoring_people (name) VALUES ('alice') RETURNING id").fetchone()[0]
    for kind, address in (("push", "oncall-alice"), ("sms", ALICE), ("voice", ALICE)):
        method = conn.execute("SELECT monitoring_add_contact_method('alice', %s, %s)", (kind, address)).fetchone()[0]
        # marked verified by the DBA (a superuser), as test_paging.py proves the code path itself
        conn.execute("UPDATE monitoring_contact_methods SET verified_at = now() WHERE id = %s", (method,))
        conn.execute("INSERT INTO monitoring_notification_rules (person_id, contact_method_id) VALUES (%s, %s)",
                     (alice, method))
    with conn.transaction():
        policy = conn.execute("INSERT INTO monitoring_escalation_policies (name, repeat_count) VALUES ('wake', 0) "
                              "RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO monitoring_escalation_steps (policy_id, step, delay, target_type, person_id) "
                     "VALUES (%s, 1, '0', 'person', %s)", (policy, alice))
        conn.execute("INSERT INTO monitoring_escalation_assignments (policy_id, alert_type) VALUES (%s, 'db_down')", (policy,))
    alert = conn.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down')").fetchone()[0]
    wait_until(lambda: conn.execute(
        "SELECT count(*) = 3 AND bool_and(status = 'succeeded') FROM monitoring_deliveries "
        "WHERE alert_id = %s AND starts_with(target, 'page:')", (alert,)).fetchone()[0])
    return alert


def delivery_of(conn, alert: int, kind: str) -> tuple[int, str]:
    return conn.execute("SELECT id, provider_reference FROM monitoring_deliveries WHERE alert_id = %s "
                        "AND context -> 'contact' ->> 'kind' = %s", (alert, kind)).fetchone()


def alert_state(conn, alert: int) -> tuple:
    return conn.execute("SELECT status, acknowledged_by, acknowledged_via, resolved_via FROM monitoring_alerts "
                        "WHERE id = %s", (alert,)).fetchone()


def actions(conn) -> int:
    return conn.execute("SELECT count(*) FROM monitoring_inbound_actions").fetchone()[0]


def test_a_text_back_acknowledges_as_the_person_and_a_replay_changes_nothing(conn, serve, paged):
    reply = {"MessageSid": "SM" + uuid.uuid4().hex, "From": ALICE, "To": "+15005550006", "Body": f"4 {paged}"}
    answer = serve.twilio("/v1/twilio/sms", reply)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/xml")
    assert f"<Message>Acknowledged alert {paged}.</Message>" in answer.text
    assert alert_state(conn, paged) == ("acknowledged", "alice", "sms", None)
    # the escalation stopped, and MTTA counts to the text
    assert conn.execute("SELECT acknowledged_by FROM monitoring_sla_metrics WHERE alert_id = %s", (paged,)).fetchone() == ("alice",)
    again = serve.twilio("/v1/twilio/sms", reply)
    assert again.status_code == 200 and "<Message>" not in again.text
    assert conn.execute("SELECT outcome FROM monitoring_inbound_actions ORDER BY id").fetchall() == [("acknowledged",)]


def test_a_forged_or_misdirected_signature_is_401_and_writes_nothing(conn, serve, paged):
    reply = {"MessageSid": "SM" + uuid.uuid4().hex, "From": ALICE, "To": "+15005550006", "Body": "4"}
    for signature in ("", twilio_signature(serve.url + "/v1/twilio/sms", reply, token="not-the-auth-token"),
                      twilio_signature(serve.url + "/v1/twilio/voice", reply),  # signed for another URL
                      twilio_signature(serve.url + "/v1/twilio/sms", {**reply, "Body": "6"})):  # body changed
        assert serve.twilio("/v1/twilio/sms", reply, signature=signature).status_code == 401
    assert actions(conn) == 0 and alert_state(conn, paged)[0] == "open"


def test_a_stranger_texting_the_number_changes_nothing_and_is_recorded(conn, serve, paged):
    answer = serve.twilio("/v1/twilio/sms", {"MessageSid": "SM" + uuid.uuid4().hex, "From": "+14155550999",
                                             "To": "+15005550006", "Body": f"6 {paged}"})
    assert answer.status_code == 200 and "<Message>" not in answer.text  # a stranger learns nothing
    assert alert_state(conn, paged)[0] == "open"
    assert conn.execute("SELECT outcome, actor FROM monitoring_inbound_actions").fetchall() == [
        ("unknown_sender", "sms +14155550999")]


def test_pressing_6_in_the_call_resolves(conn, fake, serve, paged):
    call_delivery, call_sid = delivery_of(conn, paged, "voice")
    twiml = parse_qs([r for r in fake.requests_for("twilio") if r.path.endswith("/Calls.json")][-1].body.decode())["Twiml"][0]
    gather = f"{serve.url}/v1/twilio/voice?d={call_delivery}"
    assert f'action="{gather}"' in twiml  # the call offers the keys, answered to serve
    answer = serve.twilio(f"/v1/twilio/voice?d={call_delivery}", {"CallSid": call_sid, "Digits": "6", "To": ALICE,
                                                                    "From": "+15005550006"})
    assert answer.status_code == 200 and f"<Say>Resolved alert {paged}. Goodbye.</Say>" in answer.text
    assert alert_state(conn, paged) == ("resolved", None, None, "voice")
    # a keypress for another person's number (the delivery's own number is the one that counts) changes nothing
    other = serve.twilio(f"/v1/twilio/voice?d={call_delivery}", {"CallSid": "CA" + uuid.uuid4().hex, "Digits": "4",
                                                                   "To": "+14155550999", "From": "+15005550006"})
    assert "Nothing was changed. Goodbye." in other.text


def test_an_unanswered_call_fails_after_all_and_a_stop_ends_texts(conn, serve, paged):
    call_delivery, call_sid = delivery_of(conn, paged, "voice")
    assert serve.twilio("/v1/twilio/status", {"CallSid": call_sid, "CallStatus": "no-answer"}).status_code == 204
    assert conn.execute("SELECT status, last_error FROM monitoring_deliveries WHERE id = %s", (call_delivery,)).fetchone() == (
        "failed", "not reached: Twilio says no-answer")
    assert serve.twilio("/v1/twilio/status", {"CallSid": "CA" + uuid.uuid4().hex, "CallStatus": "no-answer"}).status_code == 204
    stop = {"MessageSid": "SM" + uuid.uuid4().hex, "From": ALICE, "Body": "STOP"}
    serve.twilio("/v1/twilio/sms", stop)
    assert conn.execute("SELECT opted_out_at IS NOT NULL FROM monitoring_contact_methods WHERE kind = 'sms'").fetchone() == (True,)
    serve.twilio("/v1/twilio/sms", {"MessageSid": "SM" + uuid.uuid4().hex, "From": ALICE, "Body": "start"})
    assert conn.execute("SELECT opted_out_at IS NULL FROM monitoring_contact_methods WHERE kind = 'sms'").fetchone() == (True,)
    # a captured STOP sent again (#35 item 10) does not silence her texts a second time: it carries a receipt
    assert serve.twilio("/v1/twilio/sms", stop).status_code == 200
    assert conn.execute("SELECT opted_out_at IS NULL FROM monitoring_contact_methods WHERE kind = 'sms'").fetchone() == (True,)
    assert conn.execute("SELECT action, outcome, actor FROM monitoring_inbound_actions WHERE action IN ('stop', 'start') "
                        "ORDER BY id").fetchall() == [("stop", "opted_out", None), ("start", "opted_in", None)]


def test_a_captured_resolve_resplit_so_its_message_sid_changes_acts_once(conn, serve, paged):
    """Twilio signs names and values run together: moving the tail of MessageSid into the next name keeps the
    signature and changed the receipt, so one captured resolve acted three times (#35 item 10)."""
    captured = [("Body", f"6 {paged}"), ("From", ALICE), ("MessageSid", "SM0123abcd"), ("To", "+15005550006")]
    signature = twilio_signature(serve.url + "/v1/twilio/sms", dict(captured))
    first = serve.twilio("/v1/twilio/sms", captured, signature=signature)
    assert f"<Message>Resolved alert {paged}.</Message>" in first.text
    for resplit in ([*captured[:2], ("MessageSid", "SM0123abc"), ("dTo", "+15005550006")],
                    [*captured[:2], ("MessageSid", "SM0123"), ("abcdTo", "+15005550006")]):
        again = serve.twilio("/v1/twilio/sms", resplit, signature=signature)
        assert again.status_code == 200 and "<Message>" not in again.text
    assert conn.execute("SELECT outcome FROM monitoring_inbound_actions ORDER BY id").fetchall() == [("resolved",)]


def test_without_a_public_url_twilio_callbacks_are_refused_whatever_the_host_header(login_url, tmp_path):
    """The URL a Twilio signature is checked against comes from PGALERT_PUBLIC_URL, never from the request: with
    it unset, serve refuses every Twilio callback (403) and says why, rather than trust the Host header."""
    log = tmp_path / "serve.log"
    process, base = start_serve(login_url("monitoring_inbound"), log, "--no-console",
                                env={"TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN}, base_env=child_environment())
    try:
        stop = {"MessageSid": "SM" + uuid.uuid4().hex, "From": ALICE, "Body": "STOP"}
        for host in (None, "pgalert.example.com", "attacker.example"):
            url = f"http://{host}/v1/twilio/sms" if host else base + "/v1/twilio/sms"
            answer = requests.post(base + "/v1/twilio/sms", data=urlencode(stop), timeout=10, headers={
                "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": twilio_signature(url, stop),
                **({"Host": host} if host else {})})
            assert answer.status_code == 403, answer.text
            assert "PGALERT_PUBLIC_URL" in answer.json()["error"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    assert "PGALERT_PUBLIC_URL" in log.read_text()


def test_the_push_button_acknowledges_once_and_a_forged_one_is_refused(conn, fake, serve, paged):
    page = [json.loads(r.body) for r in fake.requests_for("ntfy") if json.loads(r.body).get("actions")][-1]
    [button] = page["actions"]
    assert button["method"] == "POST" and button["url"].startswith(serve.url + "/v1/ntfy/ack/")
    forged = button["url"][:-4] + ("AAAA" if not button["url"].endswith("AAAA") else "BBBB")
    assert requests.post(forged, timeout=10).status_code == 403
    assert requests.get(button["url"], timeout=10).status_code == 405  # a link previewer fetching it does nothing
    assert alert_state(conn, paged)[0] == "open"
    pressed = requests.post(button["url"], timeout=10)
    assert pressed.status_code == 200 and pressed.json() == {"outcome": "acknowledged", "alert_id": paged}
    assert alert_state(conn, paged) == ("acknowledged", "alice", "push", None)
    assert requests.post(button["url"], timeout=10).json()["outcome"] == "duplicate"


def test_a_person_who_sleeps_through_the_push_and_the_text_acknowledges_the_call_with_4(
        conn, fake: FakeProviders, serve, start_dispatcher):
    """The story of #25: push at once, SMS at +2 minutes, a call at +5 (the tests' clock, not sleeping); the call
    answered with 4 acknowledges as her, the escalation stops, MTTA is the keypress's time, nothing more is sent.
    On the way, a text Twilio reports undelivered hands over to the call at once."""
    start_dispatcher(env={**fake.env(), "PGALERT_PUBLIC_URL": serve.url, "PGALERT_ACTION_KEY": ACTION_KEY})
    alice = conn.execute("INSERT INTO monitoring_people (name) VALUES ('alice') RETURNING id").fetchone()[0]
    minutes = {"push": 0, "sms": 2, "voice": 5}
    for kind, address in (("push", "oncall-alice"), ("sms", ALICE), ("voice", ALICE)):
        method = conn.execute("SELECT monitoring_add_contact_method('alice', %s, %s)", (kind, address)).fetchone()[0]
        conn.execute("UPDATE monitoring_contact_methods SET verified_at = now() WHERE id = %s", (method,))
        conn.execute("INSERT INTO monitoring_notification_rules (person_id, contact_method_id, delay) "
                     "VALUES (%s, %s, make_interval(mins => %s))", (alice, method, minutes[kind]))
    with conn.transaction():
        policy = conn.execute("INSERT INTO monitoring_escalation_policies (name, repeat_count) VALUES ('wake', 0) "
                              "RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO monitoring_escalation_steps (policy_id, step, delay, target_type, person_id) "
                     "VALUES (%s, 1, '0', 'person', %s)", (policy, alice))
        conn.execute("INSERT INTO monitoring_escalation_assignments (policy_id, alert_type) VALUES (%s, 'db_down')", (policy,))
    t = conn.execute("SELECT now()").fetchone()[0]
    alert = conn.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down', p_at => %s)", (t,)).fetchone()[0]

    def sent(kind):
        return conn.execute("SELECT status FROM monitoring_deliveries WHERE alert_id = %s AND starts_with(target, 'page:') "
                            "AND context -> 'contact' ->> 'kind' = %s", (alert, kind)).fetchone()

    wait_until(lambda: sent("push") == ("succeeded",))
    assert sent("sms") is None and sent("voice") is None
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + dt.timedelta(minutes=2),))
    wait_until(lambda: sent("sms") == ("succeeded",))
    assert sent("voice") is None  # still three minutes to go by her rules
    # Twilio reports the text undelivered: the call goes now, not at five minutes
    _, text_sid = delivery_of(conn, alert, "sms")
    serve.twilio("/v1/twilio/status", {"MessageSid": text_sid, "MessageStatus": "undelivered", "ErrorCode": "30003"})
    assert sent("sms") == ("failed",)
    wait_until(lambda: sent("voice") == ("succeeded",))
    call_delivery, call_sid = delivery_of(conn, alert, "voice")
    before = conn.execute("SELECT now()").fetchone()[0]
    answer = serve.twilio(f"/v1/twilio/voice?d={call_delivery}", {"CallSid": call_sid, "Digits": "4", "To": ALICE,
                                                                    "From": "+15005550006"})
    assert f"Acknowledged alert {alert}." in answer.text
    acknowledged_at, by, via = conn.execute("SELECT acknowledged_at, acknowledged_by, acknowledged_via "
                                            "FROM monitoring_alerts WHERE id = %s", (alert,)).fetchone()
    assert (by, via) == ("alice", "voice") and acknowledged_at >= before  # MTTA counts to the keypress
    assert conn.execute("SELECT acknowledged_at FROM monitoring_sla_metrics WHERE alert_id = %s", (alert,)).fetchone() == (
        acknowledged_at,)
    assert conn.execute("SELECT finish_reason FROM monitoring_alert_escalations WHERE alert_id = %s", (alert,)).fetchone()[0] \
        in (None, "acknowledged")  # finished when its next step falls due, and it pages nobody then
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + dt.timedelta(minutes=30),))
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE alert_id = %s AND starts_with(target, 'page:')",
                        (alert,)).fetchone() == (3,)  # nothing more was sent
    assert conn.execute("SELECT finish_reason FROM monitoring_alert_escalations WHERE alert_id = %s", (alert,)).fetchone() == (
        "acknowledged",)


def test_when_someone_else_acknowledges_the_person_paged_is_told_quietly_once(conn, fake, paged):
    before = len(fake.received)
    conn.execute("SELECT monitoring_acknowledge_alert(%s, 'bob')", (paged,))

    def told() -> list:
        def said(r) -> str:
            return r.json["message"] if r.provider == "ntfy" else parse_qs(r.body.decode()).get("Body", [""])[0]

        return [r for r in fake.received[before:] if r.provider in ("ntfy", "twilio") and "acknowledged by bob" in said(r)]

    [message] = wait_until(told)
    if message.provider == "ntfy":
        assert message.json["priority"] == 3 and "actions" not in message.json
    else:
        assert message.path.endswith("/Messages.json") and "Reply" not in parse_qs(message.body.decode())["Body"][0]
    conn.execute("SELECT monitoring_resolve_alert(%s, 'bob')", (paged,))
    wait_until(lambda: conn.execute("SELECT bool_and(status IN ('succeeded', 'skipped', 'failed')) "
                                    "FROM monitoring_deliveries WHERE alert_id = %s", (paged,)).fetchone()[0])
    assert len(told()) == 1
