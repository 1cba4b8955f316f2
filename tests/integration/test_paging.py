"""Direct paging through the real dispatcher (a login holding only monitoring_dispatcher) to local stand-ins for
Twilio and ntfy: a verification code reaches the phone and leaves the database, a page pushes, texts and calls,
and a number Twilio refuses hands over to the next method at once."""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import parse_qs

from devtools.fake_providers import NTFY_TOKEN
from tests.helpers import wait_until

M = dt.timedelta(minutes=1)


def form(received) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(received.body.decode()).items()}


def final(conn, target_prefix: str) -> bool:
    return conn.execute("SELECT count(*) > 0 AND bool_and(status IN ('succeeded', 'failed', 'skipped')) "
                        "FROM monitoring_deliveries WHERE starts_with(target, %s)", (target_prefix,)).fetchone()[0]


def verify(conn, fake, person: str, kind: str, address: str) -> int:
    """A method verified as a person does it: the code the fake phone received, typed back."""
    method = conn.execute("SELECT monitoring_add_contact_method(%s, %s, %s)", (person, kind, address)).fetchone()[0]
    conn.execute("SELECT monitoring_send_verification_code(%s)", (method,))
    wait_until(lambda: final(conn, f"verify:{method}"))
    if kind == "push":
        text = json.loads(fake.requests_for("ntfy")[-1].body)["message"]
    elif kind == "sms":
        text = form(fake.requests_for("twilio")[-1])["Body"]
    else:  # a call reads the code digit by digit
        text = form(fake.requests_for("twilio")[-1])["Twiml"]
    code = re.search(r"verification code is ((?:\d ?){6})", text)[1].replace(" ", "")
    conn.execute("SELECT monitoring_verify_contact_method(%s, %s)", (method, code))  # committed, then judged
    assert conn.execute("SELECT monitoring_contact_method_verified(%s)", (method,)).fetchone() == (True,)
    return method


def test_a_page_pushes_then_texts_and_a_refused_number_calls_at_once(conn, fake, start_dispatcher):
    start_dispatcher()
    alice = conn.execute("INSERT INTO monitoring_people (name) VALUES ('alice') RETURNING id").fetchone()[0]
    push = verify(conn, fake, "alice", "push", "oncall-alice")
    # the code left the database once its message was sent: only the phone has it now
    assert conn.execute("SELECT count(*) FROM monitoring_contact_verifications WHERE code IS NOT NULL").fetchone() == (0,)
    assert json.loads(fake.requests_for("ntfy")[-1].body)["topic"] == "oncall-alice"
    assert fake.requests_for("ntfy")[-1].headers["authorization"] == f"Bearer {NTFY_TOKEN}"
    sms = verify(conn, fake, "alice", "sms", "+14155550123")
    voice = verify(conn, fake, "alice", "voice", "+14155550123")
    for method, delay in ((push, 0 * M), (sms, 2 * M), (voice, 5 * M)):
        conn.execute("INSERT INTO monitoring_notification_rules (person_id, contact_method_id, delay) VALUES (%s, %s, %s)",
                     (alice, method, delay))
    with conn.transaction():
        policy = conn.execute("INSERT INTO monitoring_escalation_policies (name, repeat_count) VALUES ('wake', 0) "
                              "RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO monitoring_escalation_steps (policy_id, step, delay, target_type, person_id) "
                     "VALUES (%s, 1, '0', 'person', %s)", (policy, alice))
        conn.execute("INSERT INTO monitoring_escalation_assignments (policy_id, alert_type) VALUES (%s, 'db_down')", (policy,))
    pushes_before = len(fake.requests_for("ntfy"))
    t = conn.execute("SELECT now()").fetchone()[0]
    alert = conn.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down', p_at => %s)", (t,)).fetchone()[0]
    pushed = wait_until(lambda: fake.requests_for("ntfy")[pushes_before:])
    assert json.loads(pushed[0].body)["priority"] == 5 and json.loads(pushed[0].body)["title"] == "Primary down"

    texts_before = len(fake.requests_for("twilio"))
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 2 * M,))
    texted = wait_until(lambda: fake.requests_for("twilio")[texts_before:])
    assert texted[0].path.endswith("/Messages.json") and form(texted[0])["To"] == "+14155550123"
    assert form(texted[0])["Body"].startswith("pgalert Critical: Primary down")
    wait_until(lambda: final(conn, "page:"))
    references = conn.execute("SELECT provider_reference FROM monitoring_deliveries WHERE alert_id = %s "
                              "AND starts_with(target, 'page:') ORDER BY id", (alert,)).fetchall()
    assert references[1][0].startswith("SM")  # Twilio's message sid, kept for its status callbacks

    # Bob's number is one Twilio refuses (its test number for "not a valid phone number"): his call goes at once
    bob = conn.execute("INSERT INTO monitoring_people (name) VALUES ('bob') RETURNING id").fetchone()[0]
    bad = conn.execute("SELECT monitoring_add_contact_method('bob', 'sms', '+15005550001')").fetchone()[0]
    bob_voice = conn.execute("SELECT monitoring_add_contact_method('bob', 'voice', '+14155550144')").fetchone()[0]
    # marked verified by the DBA (a superuser): Twilio's test number can receive no code
    conn.execute("UPDATE monitoring_contact_methods SET verified_at = now() WHERE id IN (%s, %s)", (bad, bob_voice))
    conn.execute("INSERT INTO monitoring_notification_rules (person_id, contact_method_id, delay) VALUES "
                 "(%s, %s, '0'), (%s, %s, '10 minutes')", (bob, bad, bob, bob_voice))
    conn.execute("UPDATE monitoring_escalation_steps SET person_id = %s WHERE policy_id = %s", (bob, policy))
    calls_before = len([r for r in fake.requests_for("twilio") if r.path.endswith("/Calls.json")])
    second = conn.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Replica down', p_source => 'replica')").fetchone()[0]
    wait_until(lambda: len([r for r in fake.requests_for("twilio") if r.path.endswith("/Calls.json")]) > calls_before)
    rows = conn.execute("SELECT context -> 'contact' ->> 'kind', status, last_error FROM monitoring_deliveries "
                        "WHERE alert_id = %s AND starts_with(target, 'page:') ORDER BY id", (second,)).fetchall()
    assert rows[0] == ("sms", "failed", "Twilio 21211: not a valid phone number") and rows[1][0] == "voice"
    call = [r for r in fake.requests_for("twilio") if r.path.endswith("/Calls.json")][-1]
    assert form(call)["To"] == "+14155550144" and "Replica down" in form(call)["Twiml"]


def test_a_text_whose_status_callback_was_lost_is_asked_of_twilio_and_the_call_goes(conn, fake, start_dispatcher):
    """Without a public URL Twilio calls nobody back, as when a callback is lost: the dispatcher asks Twilio about
    a text whose final status has not come, and an undelivered one hands over to the call."""
    start_dispatcher(name="sender")
    carol = conn.execute("INSERT INTO monitoring_people (name) VALUES ('carol') RETURNING id").fetchone()[0]
    for kind, delay in (("sms", "0"), ("voice", "30 minutes")):
        method = conn.execute("SELECT monitoring_add_contact_method('carol', %s, '+14155550166')", (kind,)).fetchone()[0]
        conn.execute("UPDATE monitoring_contact_methods SET verified_at = now() WHERE id = %s", (method,))  # by the DBA
        conn.execute("INSERT INTO monitoring_notification_rules (person_id, contact_method_id, delay) "
                     "VALUES (%s, %s, %s)", (carol, method, delay))
    with conn.transaction():
        policy = conn.execute("INSERT INTO monitoring_escalation_policies (name, repeat_count) VALUES ('wake', 0) "
                              "RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO monitoring_escalation_steps (policy_id, step, delay, target_type, person_id) "
                     "VALUES (%s, 1, '0', 'person', %s)", (policy, carol))
        conn.execute("INSERT INTO monitoring_escalation_assignments (policy_id, alert_type) VALUES (%s, 'db_down')", (policy,))
    alert = conn.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down')").fetchone()[0]
    wait_until(lambda: final(conn, "page:"))
    [(sid,)] = conn.execute("SELECT provider_reference FROM monitoring_deliveries WHERE alert_id = %s "
                            "AND starts_with(target, 'page:')", (alert,)).fetchall()
    fake.twilio_said(sid, "undelivered", 30003)  # the carrier could not deliver it; nobody heard
    # three minutes later (the database's poll delay is two), a dispatcher asks: one starting now asks at once
    conn.execute("UPDATE monitoring_deliveries SET completed_at = completed_at - interval '3 minutes' "
                 "WHERE provider_reference = %s", (sid,))
    start_dispatcher(name="asker")
    fetched = wait_until(lambda: [r for r in fake.requests_for("twilio") if r.method == "GET"])
    assert fetched[0].path.endswith(f"/Messages/{sid}.json")
    wait_until(lambda: [r for r in fake.requests_for("twilio") if r.path.endswith("/Calls.json")])
    assert conn.execute("SELECT status, last_error FROM monitoring_deliveries WHERE provider_reference = %s",
                        (sid,)).fetchone() == ("failed", "not reached: Twilio says undelivered (error 30003)")
    assert conn.execute("SELECT status, heard_via FROM monitoring_message_statuses WHERE provider_reference = %s",
                        (sid,)).fetchone() == ("undelivered", "poll")
