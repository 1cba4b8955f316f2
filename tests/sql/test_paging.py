"""Paging people directly (sql/paging.sql): verified contact methods, notification rules run on the escalation's
clock, fall-through to the next method, rate limits, and the end of a page at acknowledge.

Times are the database's own now() plus offsets (monitoring_run_oncall(p_at) is the clock): a message that
fails hands over at once, which the database does at its real now()."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from psycopg.types.json import Jsonb

M = dt.timedelta(minutes=1)


def person(conn, name: str) -> int:
    return conn.execute("INSERT INTO monitoring_people (name) VALUES (%s) RETURNING id", (name,)).fetchone()[0]


def add_method(conn, name: str, kind: str, address: str) -> int:
    return conn.execute("SELECT monitoring_add_contact_method(%s, %s, %s)", (name, kind, address)).fetchone()[0]


def sent_code(conn, method_id: int) -> str:
    """The code as the sending dispatcher is handed it (nobody else reads it); its message is then sent."""
    [(delivery, code)] = conn.execute(
        "SELECT delivery_id, context ->> 'code' FROM monitoring_claim_deliveries('test-dispatcher', 100) "
        "WHERE target = %s", (f"verify:{method_id}",)).fetchall()
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', claimed_by = NULL, completed_at = now() "
                 "WHERE id = %s", (delivery,))
    return code


def verified(conn, name: str, kind: str, address: str) -> int:
    """A method verified the way a person does it: the code that was sent, typed back (and committed)."""
    method_id = add_method(conn, name, kind, address)
    conn.execute("SELECT monitoring_send_verification_code(%s)", (method_id,))
    conn.execute("SELECT monitoring_verify_contact_method(%s, %s)", (method_id, sent_code(conn, method_id)))
    assert conn.execute("SELECT monitoring_contact_method_verified(%s)", (method_id,)).fetchone() == (True,)
    return method_id


def rule(conn, person_id: int, method_id: int, delay: dt.timedelta) -> None:
    conn.execute("INSERT INTO monitoring_notification_rules (person_id, contact_method_id, delay) VALUES (%s, %s, %s)",
                 (person_id, method_id, delay))


def escalate_to(conn, name: str, alert_type: str = "db_down") -> None:
    """A policy whose one step pages `name` at once, for alerts of alert_type."""
    with conn.transaction():
        policy = conn.execute("INSERT INTO monitoring_escalation_policies (name, repeat_count) VALUES ('wake', 0) "
                              "RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO monitoring_escalation_steps (policy_id, step, delay, target_type, person_id) "
                     "SELECT %s, 1, '0', 'person', id FROM monitoring_people WHERE name = %s", (policy, name))
        conn.execute("INSERT INTO monitoring_escalation_assignments (policy_id, alert_type) VALUES (%s, %s)",
                     (policy, alert_type))


def messages(conn, alert_id: int) -> list[tuple[str, str, str, str | None]]:
    """(kind, address, status, last_error) of the messages to people's contact methods, in order: the address is
    the method's (a message names its method, never an address)."""
    return conn.execute(
        "SELECT context -> 'contact' ->> 'kind', m.address, status, last_error FROM monitoring_deliveries AS d "
        "JOIN monitoring_contact_methods AS m ON m.id = (d.context ->> 'contact_method_id')::bigint "
        "WHERE alert_id = %s AND starts_with(target, 'page:') ORDER BY d.id", (alert_id,)).fetchall()


@pytest.fixture
def alice(conn):
    """Alice, woken as people are: push at once, SMS after 2 minutes, a call after 5."""
    alice_id = person(conn, "alice")
    push = verified(conn, "alice", "push", "oncall-alice")
    sms = verified(conn, "alice", "sms", "+14155550123")
    voice = verified(conn, "alice", "voice", "+14155550123")
    for method, delay in ((push, 0 * M), (sms, 2 * M), (voice, 5 * M)):
        rule(conn, alice_id, method, delay)
    escalate_to(conn, "alice")
    return {"id": alice_id, "push": push, "sms": sms, "voice": voice}


def raise_at(conn, at: dt.datetime) -> int:
    return conn.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down', p_at => %s)", (at,)).fetchone()[0]


def now(conn) -> dt.datetime:
    return conn.execute("SELECT now()").fetchone()[0]


def test_a_critical_alert_pushes_at_once_texts_at_two_minutes_and_calls_at_five(conn, alice):
    t = now(conn)
    alert = raise_at(conn, t)
    assert messages(conn, alert) == [("push", "oncall-alice", "pending", None)]
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 1 * M,))
    assert len(messages(conn, alert)) == 1
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 2 * M,))
    assert messages(conn, alert)[-1] == ("sms", "+14155550123", "pending", None)
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 5 * M,))
    assert [m[0] for m in messages(conn, alert)] == ["push", "sms", "voice"]
    # each went to the channel that carries its kind, and says who and why
    rows = conn.execute("SELECT provider, context ->> 'person', context ->> 'reason' FROM monitoring_deliveries "
                        "WHERE alert_id = %s AND starts_with(target, 'page:') ORDER BY id", (alert,)).fetchall()
    assert [r[0] for r in rows] == ["ntfy", "twilio", "twilio"]
    assert {r[1] for r in rows} == {"alice"} and all(r[2] == "escalation level 1 of policy wake" for r in rows)


def test_acknowledging_ends_the_page_and_skips_what_was_not_sent(conn, alice):
    t = now(conn)
    alert = raise_at(conn, t)
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 2 * M,))
    conn.execute("SELECT monitoring_acknowledge_alert(%s, 'alice', p_at => %s)", (alert, t + 3 * M))
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 10 * M,))
    assert messages(conn, alert) == [
        ("push", "oncall-alice", "skipped", "not sent: the alert was acknowledged"),
        ("sms", "+14155550123", "skipped", "not sent: the alert was acknowledged"),
    ]
    assert conn.execute("SELECT finish_reason FROM monitoring_person_pages WHERE alert_id = %s", (alert,)).fetchone() == ("acknowledged",)


def step_again(conn, name: str, delay: dt.timedelta) -> None:
    """The policy names `name` again, `delay` after the alert opened."""
    conn.execute("INSERT INTO monitoring_escalation_steps (policy_id, step, delay, target_type, person_id) "
                 "SELECT p.id, 2, %s, 'person', pp.id FROM monitoring_escalation_policies AS p, monitoring_people AS pp "
                 "WHERE p.name = 'wake' AND pp.name = %s", (delay, name))


def pages(conn, alert_id: int) -> list[tuple[str, str | None]]:
    return conn.execute("SELECT reason, finish_reason FROM monitoring_person_pages WHERE alert_id = %s ORDER BY id",
                        (alert_id,)).fetchall()


def test_a_later_step_that_names_them_again_pages_them_again(conn, alice):
    """Their rules had all run by the time the policy named them again, and nothing more went to them (#36 item 4):
    each step that names them starts their rules over."""
    step_again(conn, "alice", 10 * M)
    t = now(conn)
    alert = raise_at(conn, t)
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 5 * M,))
    assert [m[0] for m in messages(conn, alert)] == ["push", "sms", "voice"]
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 10 * M,))
    assert [m[0] for m in messages(conn, alert)] == ["push", "sms", "voice", "push"]
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 12 * M,))
    assert [m[0] for m in messages(conn, alert)] == ["push", "sms", "voice", "push", "sms"]
    assert pages(conn, alert) == [("escalation level 1 of policy wake", "paged again"),
                                  ("escalation level 2 of policy wake", None)]


@pytest.mark.parametrize(("action", "undo"), [("acknowledge", "unacknowledge"), ("resolve", "reopen")])
def test_acknowledged_from_the_push_then_reopened_pages_them_again(conn, alice, connect, action, undo):
    """The policy names alice at once and at +10 minutes; she acknowledges with the push's button; a responder
    reopens the alert (PagerDuty's unacknowledge, or a reopen): her rules run again at once, and the step at +10
    (+11, with the paused minute not counted) pages her again too (#36 item 4)."""
    step_again(conn, "alice", 10 * M)
    t = now(conn)
    alert = raise_at(conn, t)
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', completed_at = now(), attempts = 1 "
                 "WHERE alert_id = %s AND action IN ('trigger', 'notify')", (alert,))
    push = conn.execute("SELECT id FROM monitoring_deliveries WHERE alert_id = %s AND starts_with(target, 'page:')",
                        (alert,)).fetchone()[0]
    inbound = connect("monitoring_inbound")
    assert inbound.execute("SELECT outcome FROM monitoring_inbound_contact_act('push', 'tap', NULL, %s, NULL, %s, NULL)",
                           (push, action)).fetchone() == (action.replace("acknowledge", "acknowledged")
                                                          .replace("resolve", "resolved"),)
    assert inbound.execute("SELECT outcome FROM monitoring_inbound_act('pagerduty', 'undo', %s, %s, 'Bob', NULL)",
                           (alert, undo)).fetchone() == ("reopened",)
    assert [m[:3] for m in messages(conn, alert)] == [("push", "oncall-alice", "succeeded"),
                                                      ("push", "oncall-alice", "pending")]
    assert [p[1] for p in pages(conn, alert)] == [action.replace("acknowledge", "acknowledged")
                                                  .replace("resolve", "resolved"), None]
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 2 * M + dt.timedelta(seconds=30),))
    assert [m[0] for m in messages(conn, alert)] == ["push", "push", "sms"]
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 11 * M,))
    assert [m[0] for m in messages(conn, alert)] == ["push", "push", "sms", "push"]
    assert pages(conn, alert)[-1] == ("escalation level 2 of policy wake", None)

def test_a_silence_holds_the_rules_of_a_person_already_paged_and_they_resume_where_they_stood(conn, alice):
    """A page's SMS and call were still sent to a person after the alert was silenced (#36 item 1)."""
    t = now(conn)
    alert = raise_at(conn, t)
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', completed_at = now(), attempts = 1 "
                 "WHERE alert_id = %s AND status = 'pending'", (alert,))  # the push went out
    conn.execute("SELECT monitoring_create_silence(%s, %s, 'failing over', %s)",
                 (Jsonb([{"field": "alert_type", "op": "=", "value": "db_down"}]), t + 31 * M, t + 1 * M))
    conn.execute("SELECT monitoring_release_holds(%s)", (t + 1 * M,))  # pg_cron's minute: the silence has started
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 10 * M,))
    assert [m[0] for m in messages(conn, alert)] == ["push"]
    # the silence ends with the alert open: the SMS was a minute away when it began, the call four
    conn.execute("SELECT monitoring_release_holds(%s)", (t + 31 * M,))
    assert [m[0] for m in messages(conn, alert)] == ["push"]
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 32 * M,))
    assert [m[0] for m in messages(conn, alert)] == ["push", "sms"]
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 34 * M,))
    assert [m[0] for m in messages(conn, alert)] == ["push", "sms"]
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 35 * M,))
    assert [m[0] for m in messages(conn, alert)] == ["push", "sms", "voice"]


def test_a_failed_message_hands_over_to_the_next_method_at_once(conn, alice):
    t = now(conn)
    alert = raise_at(conn, t)
    # the push channel refused it (the dispatcher records a final failure): the SMS goes now, not at two minutes
    conn.execute("UPDATE monitoring_deliveries SET status = 'failed', completed_at = now(), last_error = 'HTTP 403' "
                 "WHERE alert_id = %s AND starts_with(target, 'page:')", (alert,))
    assert [m[:3] for m in messages(conn, alert)] == [("push", "oncall-alice", "failed"), ("sms", "+14155550123", "pending")]
    # and one more failure walks one step further, never the whole chain
    conn.execute("UPDATE monitoring_deliveries SET status = 'failed', completed_at = now() "
                 "WHERE alert_id = %s AND context -> 'contact' ->> 'kind' = 'sms'", (alert,))
    assert [m[0] for m in messages(conn, alert)] == ["push", "sms", "voice"]


def test_an_unverified_or_disabled_method_gets_nothing(conn):
    bob = person(conn, "bob")
    unverified = add_method(conn, "bob", "sms", "+14155550188")
    disabled = verified(conn, "bob", "push", "oncall-bob")
    conn.execute("UPDATE monitoring_contact_methods SET enabled = false WHERE id = %s", (disabled,))
    rule(conn, bob, unverified, 0 * M)
    rule(conn, bob, disabled, 0 * M)
    escalate_to(conn, "bob")
    t = now(conn)
    alert = raise_at(conn, t)
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 10 * M,))
    assert messages(conn, alert) == []
    # the page exists (bob has rules) but nothing could reach him; the escalation's own notify still went out
    assert conn.execute("SELECT count(*) FROM monitoring_person_pages WHERE alert_id = %s", (alert,)).fetchone() == (1,)
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE alert_id = %s AND action = 'notify' "
                        "AND starts_with(target, 'escalation:')", (alert,)).fetchone()[0] >= 1


def test_a_method_over_its_rate_limit_is_skipped_visibly_and_alert_pages_come_first(conn):
    carol = person(conn, "carol")
    voice = verified(conn, "carol", "voice", "+14155550177")  # the code was a call: 1 of 3 in 15 minutes
    sms = verified(conn, "carol", "sms", "+14155550177")
    rule(conn, carol, voice, 0 * M)
    rule(conn, carol, sms, 1 * M)
    escalate_to(conn, "carol", "disk_full")

    def call(alert_id):
        return conn.execute("SELECT status, last_error FROM monitoring_deliveries WHERE alert_id = %s "
                            "AND context -> 'contact' ->> 'kind' = 'voice'", (alert_id,)).fetchone()

    hosts = iter(range(100))

    def page():  # an alert of its own each time (another host), so each pages carol again
        return conn.execute("SELECT monitoring_raise_alert('disk_full', 'critical', 'Disk full', p_source => %s)",
                            (f"host{next(hosts)}",)).fetchone()[0]

    first_test, second_test = (conn.execute("SELECT monitoring_test_page('carol')").fetchone()[0] for _ in range(2))
    assert call(first_test) == ("pending", None)
    # a status message leaves the last call of the limit to alert pages
    assert call(second_test) == ("skipped", "not sent: rate limited: 2 messages to this voice in the last 15 minutes "
                                            "(the last of its limit is kept for alert pages)")
    first_page, second_page = page(), page()
    assert call(first_page) == ("pending", None)
    assert call(second_page) == ("skipped", "not sent: rate limited: 3 messages to this voice in the last 15 minutes")
    # the limit moves on to the next method at once, it never stops the page
    assert [m[:3] for m in messages(conn, second_page)] == [("voice", "+14155550177", "skipped"),
                                                            ("sms", "+14155550177", "pending")]
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="rate limited"):
        conn.execute("SELECT monitoring_send_verification_code(%s)", (voice,))


def test_a_test_page_walks_every_method_at_once_and_pages_nobody_else(conn, alice):
    alert = conn.execute("SELECT monitoring_test_page('alice')").fetchone()[0]
    assert [m[:3] for m in messages(conn, alert)] == [
        ("push", "oncall-alice", "pending"), ("sms", "+14155550123", "pending"), ("voice", "+14155550123", "pending")]
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE alert_id = %s AND NOT starts_with(target, 'page:')",
                        (alert,)).fetchone() == (0,)
    assert conn.execute("SELECT status, alert_type FROM monitoring_alerts WHERE id = %s", (alert,)).fetchone() == (
        "resolved", "pgalert_test_page")
    assert conn.execute("SELECT count(*) FROM monitoring_sla_metrics WHERE alert_id = %s", (alert,)).fetchone() == (0,)
    with pytest.raises(psycopg.errors.NoDataFound, match="no person is named 'nobody'"):
        conn.execute("SELECT monitoring_test_page('nobody')")
    person(conn, "dave")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="dave has no notification rules"):
        conn.execute("SELECT monitoring_test_page('dave')")


def test_methods_are_checked_when_added(conn):
    person(conn, "erin")
    with pytest.raises(psycopg.errors.CheckViolation, match="phone_is_e164"):
        add_method(conn, "erin", "sms", "0155 555 0100")
    with pytest.raises(psycopg.errors.CheckViolation, match="push_is_a_topic"):
        add_method(conn, "erin", "push", "https://evil.example.com/topic")  # a topic, never a host
    with pytest.raises(psycopg.errors.CheckViolation, match="contact_kind_is_known"):
        add_method(conn, "erin", "pager", "x")
    with pytest.raises(psycopg.errors.NoDataFound, match="no person is named 'nobody'"):
        add_method(conn, "nobody", "sms", "+14155550100")
    assert add_method(conn, "erin", " SMS ", " +14155550100 ") > 0  # kind and spaces forgiven


def test_a_code_is_kept_as_a_hash_once_sent_and_never_in_the_outbox(conn):
    person(conn, "frank")
    method = add_method(conn, "frank", "sms", "+14155550166")
    conn.execute("SELECT monitoring_send_verification_code(%s)", (method,))
    context = conn.execute("SELECT context::text FROM monitoring_deliveries WHERE target = %s", (f"verify:{method}",)).fetchone()[0]
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="less than a minute ago"):
        conn.execute("SELECT monitoring_send_verification_code(%s)", (method,))
    code = sent_code(conn, method)  # claimed, and sent
    assert len(code) == 6 and code.isdigit()
    assert not shows(context, code) and "+14155550166" not in context and "+1 ••• ••• 66" in context
    stored = conn.execute("SELECT to_jsonb(v)::text FROM monitoring_contact_verifications v").fetchone()[0]
    assert not shows(stored, code)
    assert conn.execute("SELECT verified_at FROM monitoring_contact_methods WHERE id = %s", (method,)).fetchone() == (None,)
    guess(conn, method, f" {code} ")
    assert judged(conn, method) is True


def test_five_wrong_codes_end_the_code(connect, conn):
    person(conn, "gina")
    method = add_method(conn, "gina", "sms", "+14155550155")
    conn.execute("SELECT monitoring_send_verification_code(%s)", (method,))
    code = sent_code(conn, method)
    admin = connect("monitoring_admin")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        guess(admin, method, wrong)
        assert judged(admin, method) is False
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="no code is waiting"):
        guess(admin, method, code)
    assert judged(admin, method) is False
    assert conn.execute("SELECT verified_at FROM monitoring_contact_methods WHERE id = %s", (method,)).fetchone() == (None,)


def test_an_admin_cannot_mark_a_method_verified_or_move_a_verified_address(connect, conn):
    person(conn, "hank")
    method = verified(conn, "hank", "sms", "+14155550144")
    admin = connect("monitoring_admin")
    for statement in ("UPDATE monitoring_contact_methods SET verified_at = now()",
                      "UPDATE monitoring_contact_methods SET address = '+14155550999'",
                      "INSERT INTO monitoring_contact_methods (person_id, kind, address, verified_at) "
                      "SELECT id, 'voice', '+14155550999', now() FROM monitoring_people WHERE name = 'hank'"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            admin.execute(statement)
    admin.execute("UPDATE monitoring_contact_methods SET enabled = false WHERE id = %s", (method,))  # this they may
    # and nobody else may do any of it
    for role in ("monitoring_writer", "monitoring_reader", "monitoring_dispatcher", "monitoring_console"):
        for call in ("monitoring_send_verification_code(%s)", "monitoring_verify_contact_method(%s, '000000')",
                     "monitoring_contact_method_verified(%s)", "_monitoring_forget_sent_code()"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connect(role).execute(f"SELECT {call}", (method,) if "%s" in call else ())


# --- #35 item 8: verification binds an admin --------------------------------------------------------------------

def claimed(conn) -> dict[str, dict]:
    """What the sending dispatcher is handed, by target: the only place a code or an address is read."""
    return {row[0]: row[1] for row in conn.execute(
        "SELECT target, context FROM monitoring_claim_deliveries('test-dispatcher', 100)").fetchall()}


def readable_text(connection) -> str:
    """Everything this login may read, as text: every table and view of pgalert it has SELECT on, whole rows where
    it may read whole rows, else the columns it may read."""
    relations = connection.execute("""
        SELECT c.relname, array_agg(quote_ident(a.attname) ORDER BY a.attnum)
        FROM pg_class AS c JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'm', 'p')
          AND has_column_privilege(c.oid, a.attnum, 'SELECT')
        GROUP BY c.relname""").fetchall()
    return "\n".join(
        str(connection.execute(f"SELECT coalesce(jsonb_agg(jsonb_build_array({', '.join(columns)}))::text, '') "
                               f"FROM public.{name}").fetchone()[0])
        for name, columns in relations) + "\n" + on_call_text(connection)


def on_call_text(connection) -> str:
    """Who is on call on every schedule, as monitoring_who_is_on_call tells this login, where it may ask."""
    if not connection.execute("SELECT has_function_privilege('monitoring_who_is_on_call(text, timestamptz)', 'EXECUTE') "
                              "AND has_table_privilege('monitoring_oncall_schedules', 'SELECT')").fetchone()[0]:
        return ""
    return str(connection.execute("SELECT jsonb_agg(w) FROM monitoring_oncall_schedules AS s "
                                  "CROSS JOIN LATERAL monitoring_who_is_on_call(s.name) AS w").fetchone()[0])


def shows(text: str, code: str) -> bool:
    """The code as a value of its own: not six digits inside a checksum, a phone number or a time's fraction."""
    import re
    return re.search(rf"(?<![0-9A-Za-z.+]){code}(?![0-9A-Za-z])", text) is not None


@pytest.mark.parametrize("role", ["monitoring_admin", "monitoring_reader", "monitoring_writer", "monitoring_console",
                                  "monitoring_inbound"])
def test_no_role_but_the_sending_dispatcher_reads_a_code(connect, conn, role):
    person(conn, "ivy")
    method = add_method(conn, "ivy", "sms", "+14155550133")
    admin, other = connect("monitoring_admin"), connect(role)
    with admin.transaction():  # the transaction that asked for it, before and after the code exists elsewhere
        admin.execute("SELECT monitoring_send_verification_code(%s)", (method,))
        seen_by_admin = readable_text(admin)
    seen_by_other = readable_text(other)
    code = claimed(connect("monitoring_dispatcher"))[f"verify:{method}"]["code"]
    assert len(code) == 6 and code.isdigit()
    seen_after_claim = readable_text(other)
    assert not shows(seen_by_admin, code) and not shows(seen_by_other, code) and not shows(seen_after_claim, code)


def guess(connection, method: int, code: str) -> None:
    connection.execute("SELECT monitoring_verify_contact_method(%s, %s)", (method, code))


def judged(connection, method: int) -> bool:
    return connection.execute("SELECT monitoring_contact_method_verified(%s)", (method,)).fetchone()[0]


def test_a_guess_is_judged_only_once_committed_so_rolling_back_learns_nothing(connect, conn):
    person(conn, "jack")
    method = add_method(conn, "jack", "sms", "+14155550122")
    conn.execute("SELECT monitoring_send_verification_code(%s)", (method,))
    code = claimed(conn)[f"verify:{method}"]["code"]
    admin = connect("monitoring_admin")
    # the right code and wrong ones, each in a transaction rolled back, with or without a savepoint: no verdict
    for attempt in (code, f"{(int(code) + 1) % 1_000_000:06d}", code):
        with _rolled_back(admin):
            guess(admin, method, attempt)
            with admin.transaction():
                assert judged(admin, method) is False
            assert judged(admin, method) is False
    assert judged(admin, method) is False
    assert conn.execute("SELECT verified_at FROM monitoring_contact_methods WHERE id = %s", (method,)).fetchone() == (None,)
    guess(admin, method, code)  # committed: now it counts, and is right
    assert judged(admin, method) is True


class _Rollback(Exception):
    pass


class _rolled_back:
    """A transaction on `connection` that is always rolled back, as an attacker's would be."""

    def __init__(self, connection):
        self.connection, self.transaction = connection, None

    def __enter__(self):
        self.transaction = self.connection.transaction()
        self.transaction.__enter__()

    def __exit__(self, *exc):
        self.transaction.__exit__(_Rollback, _Rollback(), None)
        return exc[0] is None or exc[0] is _Rollback


def test_tries_cannot_be_undone_by_rolling_back_the_judgement(connect, conn):
    person(conn, "kim")
    method = add_method(conn, "kim", "sms", "+14155550111")
    conn.execute("SELECT monitoring_send_verification_code(%s)", (method,))
    code = claimed(conn)[f"verify:{method}"]["code"]
    admin = connect("monitoring_admin")
    wrong = [f"{(int(code) + n) % 1_000_000:06d}" for n in range(1, 6)]
    for attempt in wrong:  # five committed wrong tries, each judged in a transaction rolled back
        guess(admin, method, attempt)
        with _rolled_back(admin):
            assert judged(admin, method) is False
    # the code is spent, however the judgements went: the right code now changes nothing
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="no code is waiting"):
        guess(admin, method, code)
    assert judged(admin, method) is False
    # nor can a try hide behind another transaction still open when it is judged
    assert conn.execute("SELECT verified_at FROM monitoring_contact_methods WHERE id = %s", (method,)).fetchone() == (None,)


def test_many_tries_committed_at_once_get_five_verdicts_at_most(connect, conn):
    person(conn, "lou")
    method = add_method(conn, "lou", "sms", "+14155550112")
    conn.execute("SELECT monitoring_send_verification_code(%s)", (method,))
    code = claimed(conn)[f"verify:{method}"]["code"]
    admins = [connect("monitoring_admin") for _ in range(7)]
    for n, admin in enumerate(admins[:6]):  # six transactions open at once, the right code last
        admin.execute("BEGIN")
        guess(admin, method, f"{(int(code) + n + 1) % 1_000_000:06d}" if n < 5 else code)
    for admin in admins[:6]:
        admin.execute("COMMIT")
    assert judged(admins[6], method) is False
    assert conn.execute("SELECT verified_at FROM monitoring_contact_methods WHERE id = %s", (method,)).fetchone() == (None,)


def pending_page(conn, name: str, kind: str, address: str) -> tuple[int, int]:
    """A verified method of `name` with a rule, and a test page's message to it waiting: (method, delivery)."""
    person_id = person(conn, name)
    method = verified(conn, name, kind, address)
    rule(conn, person_id, method, 0 * M)
    alert = conn.execute("SELECT monitoring_test_page(%s)", (name,)).fetchone()[0]
    delivery = conn.execute("SELECT id FROM monitoring_deliveries WHERE alert_id = %s", (alert,)).fetchone()[0]
    return method, delivery


FORGERIES = {
    # an admin inserts a message of their own to a number nobody verified
    "inserted, no method": ("INSERT INTO monitoring_deliveries (alert_id, provider, action, target, context) "
                            "SELECT %(other_alert)s, 'twilio', 'notify', 'page:0:0', jsonb_build_object('contact', "
                            "jsonb_build_object('kind', 'sms', 'address', '+14155550999'), 'reason', 'hi')"),
    "inserted, unverified method": (
        "INSERT INTO monitoring_deliveries (alert_id, provider, action, target, context) "
        "SELECT %(other_alert)s, 'twilio', 'notify', 'page:0:1', jsonb_build_object('contact_method_id', %(unverified)s, "
        "'contact', jsonb_build_object('kind', 'sms', 'address', '+14155550999'), 'reason', 'hi')"),
    "inserted as a code to another method": (
        "INSERT INTO monitoring_deliveries (alert_id, provider, action, target, context) "
        "SELECT %(other_alert)s, 'twilio', 'notify', 'verify:' || %(method)s, jsonb_build_object('contact_method_id', "
        "%(unverified)s, 'contact', jsonb_build_object('kind', 'sms', 'address', '+14155550999'), 'reason', 'hi')"),
    "redirected to another number": (
        "UPDATE monitoring_deliveries SET context = jsonb_set(context, '{contact,address}', '\"+14155550999\"') "
        "WHERE id = %(delivery)s"),
    "redirected to an unverified method": (
        "UPDATE monitoring_deliveries SET context = context || jsonb_build_object('contact_method_id', %(unverified)s) "
        "WHERE id = %(delivery)s"),
    "method disabled after queueing": "UPDATE monitoring_contact_methods SET enabled = false WHERE id = %(method)s",
}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_nothing_is_sent_to_an_address_not_verified_when_it_is_claimed(connect, conn, forgery):
    method, delivery = pending_page(conn, "mia", "sms", "+14155550123")
    unverified = add_method(conn, "mia", "voice", "+14155550999")
    # an alert of its own for an inserted row: a second message to a channel waits for the alert's first
    other_alert = conn.execute("SELECT monitoring_raise_alert('forged', 'info', 'Forged')").fetchone()[0]
    connect("monitoring_admin").execute(FORGERIES[forgery], {"other_alert": other_alert, "method": method,
                                                           "unverified": unverified, "delivery": delivery})
    handed = claimed(connect("monitoring_dispatcher"))
    sent_to = {(c.get("contact") or {}).get("address") for c in handed.values()}
    assert "+14155550999" not in sent_to
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE status = 'failed' "
                        "AND last_error LIKE 'refused: %%'").fetchone()[0] == 1


def test_a_code_goes_to_the_method_being_verified_and_a_verified_method_gets_its_own_address(connect, conn):
    method, delivery = pending_page(conn, "ned", "push", "oncall-ned-7f3a9c")
    unverified = add_method(conn, "ned", "sms", "+14155550144")
    conn.execute("SELECT monitoring_send_verification_code(%s)", (unverified,))
    handed = claimed(connect("monitoring_dispatcher"))
    assert handed[f"verify:{unverified}"]["contact"]["address"] == "+14155550144"
    page = next(c for target, c in handed.items() if target.startswith("page:"))
    assert page["contact"]["address"] == "oncall-ned-7f3a9c"


# --- #35 item 2: an address is its person's secret ---------------------------------------------------------------

ADDRESSES = {"sms": "+14155550187", "voice": "+14155550178", "push": "oncall-olga-9b2e5d71c4",
             "email": "olga.private@example.com", "slack": "U0PRIVATE42"}


@pytest.mark.parametrize("role", ["monitoring_reader", "monitoring_writer", "monitoring_console", "monitoring_inbound"])
def test_no_role_but_admins_reads_an_address_and_readers_see_it_masked(connect, conn, role):
    olga = person(conn, "olga")
    for kind, address in ADDRESSES.items():  # verified, paged, tested, and one more code on its way
        rule(conn, olga, verified(conn, "olga", kind, address), 0 * M)
    conn.execute("SELECT monitoring_test_page('olga')")
    conn.execute("SELECT monitoring_send_verification_code(monitoring_add_contact_method('olga', 'sms', '+14155550100'))")
    other = connect(role)
    seen = readable_text(other)
    assert [address for address in (*ADDRESSES.values(), "+14155550100") if address in seen] == []
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        other.execute("SELECT address FROM monitoring_contact_methods")
    if role in ("monitoring_reader", "monitoring_console"):
        shown = dict(other.execute("SELECT kind, address_shown FROM monitoring_contacts WHERE verified_at IS NOT NULL"))
        assert shown == {"sms": "+1 ••• ••• 87", "voice": "+1 ••• ••• 78", "push": "ntfy: ••••c4",
                         "email": "o•••@example.com", "slack": "U••••42"}
    admin = connect("monitoring_admin")
    assert {a for (a,) in admin.execute("SELECT address_shown FROM monitoring_contacts")} >= set(ADDRESSES.values())


def console_session(conn, login: str, role: str, who: str | None) -> str:
    """A console user's session token, as signing in gives it."""
    import secrets

    conn.execute("SELECT monitoring_console_save_user(%s, %s, %s, NULL, %s)", (login, login, role, who))
    token = secrets.token_urlsafe(32)
    conn.execute("INSERT INTO monitoring_console_sessions (token_sha256, user_id, expires_at) "
                 "SELECT sha256(convert_to(%s, 'UTF8')), id, now() + interval '1 hour' "
                 "FROM monitoring_console_users WHERE login = %s", (token, login))
    return token


def test_the_console_shows_an_address_to_its_person_and_admins_only(connect, conn):
    olga = person(conn, "olga")
    rule(conn, olga, verified(conn, "olga", "push", ADDRESSES["push"]), 0 * M)
    person(conn, "pete")
    console = connect("monitoring_console")

    def session(login: str, role: str, who: str | None) -> str:
        return console_session(conn, login, role, who)

    def shown(token: str) -> str:
        [(name, methods)] = console.execute("SELECT * FROM monitoring_console_contacts(%s)", (token,)).fetchall()
        return methods[0]["address"]

    assert shown(session("olga", "viewer", "olga")) == ADDRESSES["push"]
    assert shown(session("root", "admin", None)) == ADDRESSES["push"]
    for login, role, who in (("pete", "responder", "pete"), ("vic", "viewer", None), ("rob", "responder", None)):
        assert shown(session(login, role, who)) == "ntfy: ••••c4"
    with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification):
        shown("not a session")
    # serve's login, whatever it asks in SQL, reads no address
    assert ADDRESSES["push"] not in readable_text(console)


# --- #35 item 2: a person's email and phone are their secret too -------------------------------------------------

OLGA = {"email": "olga.home@example.com", "phone": "+14155550166"}


@pytest.fixture
def olga_paged(conn):
    """Olga, with her email and phone, on call now (an override of the seed's rotation) and paged by the email channel
    by the one step of db_down's policy: (her id, the alert's id)."""
    olga = conn.execute("INSERT INTO monitoring_people (name, email, phone) VALUES ('olga', %s, %s) RETURNING id",
                        (OLGA["email"], OLGA["phone"])).fetchone()[0]
    conn.execute("INSERT INTO monitoring_oncall_overrides (schedule_id, person_id, during) "
                 "SELECT id, %s, tstzrange(now() - interval '1 hour', now() + interval '1 hour') "
                 "FROM monitoring_oncall_schedules WHERE name = 'primary'", (olga,))
    conn.execute("INSERT INTO monitoring_routes (alert_type, provider) VALUES ('db_down', 'email')")
    escalate_to(conn, "olga")
    alert = conn.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down')").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE alert_id = %s AND provider = 'email' "
                        "AND action = 'notify'", (alert,)).fetchone() == (1,)
    return olga, alert


@pytest.mark.parametrize("role", ["monitoring_reader", "monitoring_writer", "monitoring_console", "monitoring_inbound"])
def test_no_role_but_admins_reads_a_persons_email_or_phone_and_readers_see_them_masked(connect, conn, olga_paged, role):
    other = connect(role)
    seen = readable_text(other)
    assert [secret for secret in OLGA.values() if secret in seen] == []
    assert "olga" in seen or role in ("monitoring_writer", "monitoring_inbound")
    for column in ("email", "phone", "*"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            other.execute(f"SELECT {column} FROM monitoring_people")
    if role in ("monitoring_reader", "monitoring_console"):
        assert other.execute("SELECT person, email, phone FROM monitoring_who_is_on_call('primary')").fetchone() == (
            "olga", "o•••@example.com", "+1 ••• ••• 66")
        assert other.execute("SELECT id, name FROM monitoring_people WHERE name = 'olga'").fetchone() == olga_paged[0:1] + ("olga",)
    else:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            other.execute("SELECT * FROM monitoring_who_is_on_call('primary')")
    admin = connect("monitoring_admin")
    assert all(secret in readable_text(admin) for secret in OLGA.values())
    assert admin.execute("SELECT email, phone FROM monitoring_who_is_on_call('primary')").fetchone() == (
        OLGA["email"], OLGA["phone"])


def test_the_claim_hands_the_email_channel_the_paged_persons_email_and_the_outbox_keeps_only_her_id(connect, conn,
                                                                                                    olga_paged):
    olga, alert = olga_paged
    [(stored,)] = conn.execute("SELECT context FROM monitoring_deliveries WHERE alert_id = %s AND provider = 'email' "
                               "AND action = 'notify'", (alert,)).fetchall()
    assert stored["person_id"] == olga and not stored.keys() & {"email", "phone"}
    dispatcher = connect("monitoring_dispatcher")
    assert dispatcher.execute("SELECT email, phone FROM monitoring_who_is_on_call('primary')").fetchone() == (
        OLGA["email"], OLGA["phone"])
    # the page follows the alert's own email, which went out
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', completed_at = now() "
                 "WHERE alert_id = %s AND provider = 'email' AND action = 'trigger'", (alert,))
    handed = dispatcher.execute(
        "SELECT provider, action, context FROM monitoring_claim_deliveries('test-dispatcher', 100)").fetchall()
    [page] = [context for provider, action, context in handed if provider == "email" and action == "notify"]
    # her people row's email is nobody's verified address: the page goes to the channel's recipients (#35, 8)
    assert ("email" in page, page["phone"], page["person"]) == (False, OLGA["phone"], "olga")
    # every other message is handed as it was stored: no lookup where none is needed
    assert all("email" not in context for provider, action, context in handed if action != "notify")


@pytest.mark.parametrize("method", ["none", "unverified", "disabled", "opted_out", "verified"])
def test_an_escalation_mails_a_person_only_at_an_address_they_verified(connect, conn, olga_paged, method):
    """Nothing is sent to an address that is not verified when it is sent (#35, 8): monitoring_people.email is
    written by an admin and confirmed by nobody, so a page by the email channel goes to Olga's verified email
    contact method, or, without one, to the channel's own recipients."""
    olga, alert = olga_paged
    if method != "none":
        mine = add_method(conn, "olga", "email", "olga.verified@example.com")
        conn.execute("UPDATE monitoring_contact_methods SET verified_at = CASE WHEN %s <> 'unverified' THEN now() END, "
                     "enabled = %s <> 'disabled', opted_out_at = CASE WHEN %s = 'opted_out' THEN now() END "
                     "WHERE id = %s", (method, method, method, mine))
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', completed_at = now() "
                 "WHERE alert_id = %s AND provider = 'email' AND action = 'trigger'", (alert,))
    handed = connect("monitoring_dispatcher").execute(
        "SELECT provider, action, context FROM monitoring_claim_deliveries('test-dispatcher', 100)").fetchall()
    [page] = [context for provider, action, context in handed if provider == "email" and action == "notify"]
    assert page.get("email") == ("olga.verified@example.com" if method == "verified" else None)


def sent_by_twilio(conn, delivery: int, sid: str, at: dt.datetime | None = None) -> None:
    """The dispatcher (on `conn`) claimed the message, Twilio answered 201 with `sid`, and the result was
    recorded."""
    [(attempt,)] = conn.execute("SELECT attempt FROM monitoring_claim_deliveries('test-dispatcher', 100) "
                                "WHERE delivery_id = %s", (delivery,)).fetchall()
    at = at or now(conn)
    result = {"delivery_id": delivery, "attempt": attempt, "outcome": "succeeded", "http_status": 201, "error": None,
              "provider_reference": sid, "retry_at": None, "started_at": at.isoformat(), "finished_at": at.isoformat()}
    assert conn.execute("SELECT monitoring_complete_deliveries('test-dispatcher', %s)", (Jsonb([result]),)).fetchone() == (1,)


def texting(conn, alice) -> tuple[int, int]:
    """Alice's page with its push refused, so her text is due now: (alert id, the text's delivery id)."""
    alert = raise_at(conn, now(conn))
    conn.execute("UPDATE monitoring_deliveries SET status = 'failed', completed_at = now() "
                 "WHERE alert_id = %s AND starts_with(target, 'page:')", (alert,))
    [(text,)] = conn.execute("SELECT id FROM monitoring_deliveries WHERE alert_id = %s AND status = 'pending' "
                             "AND context -> 'contact' ->> 'kind' = 'sms'", (alert,)).fetchall()
    return alert, text


def status_heard(conn, sid: str, status: str, error_code: str | None = None) -> str:
    return conn.execute("SELECT monitoring_inbound_contact_status(%s, %s, %s)", (sid, status, error_code)).fetchone()[0]


def test_a_status_twilio_sent_before_the_sid_was_recorded_is_kept_and_applied_when_it_is(connect, conn, alice):
    alert, text = texting(conn, alice)
    serve, dispatcher = connect("monitoring_inbound"), connect("monitoring_dispatcher")
    # Twilio calls back within milliseconds of its 201, before the dispatcher's result is written
    assert status_heard(serve, "SM0001", "sent") == "kept"
    assert status_heard(serve, "SM0001", "undelivered", "30003") == "kept"
    assert status_heard(serve, "SM0001", "sent") == "kept"  # a late, earlier status never hides the final one
    sent_by_twilio(dispatcher, text, "SM0001")
    assert messages(conn, alert)[1:] == [
        ("sms", "+14155550123", "failed", "not reached: Twilio says undelivered (error 30003)"),
        ("voice", "+14155550123", "pending", None),  # the call goes now, not at five minutes
    ]


def test_a_status_for_a_recorded_message_fails_it_at_once_and_a_repeat_changes_nothing(conn, alice):
    alert, text = texting(conn, alice)
    sent_by_twilio(conn, text, "SM0002")
    assert status_heard(conn, "SM0002", "delivered") == "noted"
    assert messages(conn, alert)[1][2] == "succeeded"
    assert status_heard(conn, "SM0002", "failed", "30008") == "failed"
    assert status_heard(conn, "SM0002", "failed", "30008") == "noted"
    assert [m[2] for m in messages(conn, alert)] == ["failed", "failed", "pending"]


def to_poll(conn) -> list[tuple[str, str]]:
    return [(kind, sid) for _id, _channel, kind, sid in
            conn.execute("SELECT * FROM monitoring_messages_to_poll(100)").fetchall()]


def test_a_message_whose_final_status_never_came_is_polled_every_few_minutes_until_it_comes(conn, alice):
    alert, text = texting(conn, alice)
    sent_by_twilio(conn, text, "SM0003", at=now(conn) - 3 * M)
    conn.execute("SELECT monitoring_run_oncall(%s)", (now(conn) + 5 * M,))
    [(call,)] = conn.execute("UPDATE monitoring_deliveries SET next_attempt_at = now() WHERE alert_id = %s "
                             "AND context -> 'contact' ->> 'kind' = 'voice' RETURNING id", (alert,)).fetchall()
    sent_by_twilio(conn, call, "CA0004")
    assert to_poll(conn) == [("sms", "SM0003")]  # the call placed just now may still be called back
    # Twilio's answer to the poll: not final yet, so it is asked again in a few minutes, not at once
    assert conn.execute("SELECT monitoring_message_polled('SM0003', 'sent', NULL)").fetchone() == ("noted",)
    assert to_poll(conn) == []
    conn.execute("UPDATE monitoring_message_statuses SET heard_at = heard_at - interval '3 minutes'")
    assert to_poll(conn) == [("sms", "SM0003")]
    assert conn.execute("SELECT monitoring_message_polled('SM0003', 'undelivered', '30005')").fetchone() == ("failed",)
    assert to_poll(conn) == []
    assert messages(conn, alert)[1][2:] == ("failed", "not reached: Twilio says undelivered (error 30005)")
    # one whose final status came is never polled, however long ago it was sent
    conn.execute("UPDATE monitoring_deliveries SET completed_at = completed_at - interval '5 minutes' WHERE id = %s",
                 (call,))
    assert to_poll(conn) == [("voice", "CA0004")]
    assert status_heard(conn, "CA0004", "completed") == "noted" and to_poll(conn) == []


def test_a_number_that_texted_stop_is_skipped_on_the_page_with_why_and_the_next_rule_goes_at_once(conn, alice):
    assert conn.execute("SELECT monitoring_inbound_contact_opt_out('twilio:stop', '+14155550123', TRUE)").fetchone() == (1,)
    t = now(conn)
    alert = raise_at(conn, t)
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 2 * M,))
    assert messages(conn, alert) == [
        ("push", "oncall-alice", "pending", None),
        ("sms", "+14155550123", "skipped", "not sent: opted out: this number texted STOP (START resumes)"),
        ("voice", "+14155550123", "pending", None),  # at two minutes, not five
    ]
    assert conn.execute("SELECT kind, opted_out_at IS NOT NULL, ready FROM monitoring_contacts WHERE kind = 'sms'"
                        ).fetchone() == ("sms", True, False)
    [(_name, methods)] = conn.execute("SELECT * FROM monitoring_console_contacts(%s)",
                                      (console_session(conn, "root", "admin", None),)).fetchall()
    assert [(m["kind"], m["opted_out"]) for m in methods] == [("push", False), ("sms", True), ("voice", False)]


def status_messages(conn, alert_id: int) -> list[tuple[str, str, str, str | None]]:
    """(kind, reason, status, last_error) of the status messages people got about an alert."""
    return conn.execute(
        "SELECT context -> 'contact' ->> 'kind', context ->> 'reason', status, last_error FROM monitoring_deliveries "
        "WHERE alert_id = %s AND starts_with(target, 'status:') ORDER BY id", (alert_id,)).fetchall()


def reached(conn, alert_id: int) -> None:
    """The page's messages due now were sent (claimed and recorded as succeeded)."""
    conn.execute("SELECT monitoring_claim_deliveries('test-dispatcher', 100)")
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', claimed_by = NULL, completed_at = now() "
                 "WHERE alert_id = %s AND status = 'sending'", (alert_id,))


def test_a_person_who_was_paged_hears_when_someone_else_acknowledges(conn, alice):
    t = now(conn)
    alert = raise_at(conn, t)
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 2 * M,))
    reached(conn, alert)  # her push and her text went out
    conn.execute("SELECT monitoring_acknowledge_alert(%s, 'bob', p_at => %s)", (alert, t + 3 * M))
    # one short message, on the last method that reached her that is not a call; the call not yet made is skipped
    assert status_messages(conn, alert) == [("sms", f"alert {alert} acknowledged by bob", "pending", None)]
    assert messages(conn, alert)[-1][2] == "succeeded"
    # and nothing more when bob resolves it: she was told it is taken
    conn.execute("SELECT monitoring_resolve_alert(%s, 'bob', p_at => %s)", (alert, t + 4 * M))
    assert len(status_messages(conn, alert)) == 1


def test_nobody_is_told_what_they_did_themselves_or_about_a_page_that_never_reached_them(conn, alice):
    t = now(conn)
    mine = raise_at(conn, t)
    reached(conn, mine)
    conn.execute("SELECT monitoring_acknowledge_alert(%s, 'alice', p_at => %s)", (mine, t + M))
    assert status_messages(conn, mine) == []
    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice', p_at => %s)", (mine, t + 2 * M))
    unsent = conn.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Replica down')").fetchone()[0]
    conn.execute("SELECT monitoring_resolve_alert(%s, 'bob')", (unsent,))  # her push was never sent
    assert status_messages(conn, unsent) == []


def test_a_status_message_over_its_rate_limit_is_skipped_with_why(conn, alice):
    t = now(conn)
    alert = raise_at(conn, t)
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 2 * M,))
    reached(conn, alert)
    # her code, her page and two more texts in the last quarter of an hour: the fifth, the limit's last, is kept
    # for pages
    for n in range(2):
        conn.execute("INSERT INTO monitoring_deliveries (alert_id, provider, action, target, context, status, "
                     "completed_at) SELECT alert_id, provider, action, 'earlier:' || %s, context, 'succeeded', now() "
                     "FROM monitoring_deliveries "
                     "WHERE alert_id = %s AND target LIKE 'page:%%' AND context -> 'contact' ->> 'kind' = 'sms'",
                     (n, alert))
    conn.execute("SELECT monitoring_acknowledge_alert(%s, 'bob')", (alert,))
    assert status_messages(conn, alert) == [(
        "sms", f"alert {alert} acknowledged by bob", "skipped",
        "not sent: rate limited: 4 messages to this sms in the last 15 minutes (the last of its limit is kept for "
        "alert pages)")]
