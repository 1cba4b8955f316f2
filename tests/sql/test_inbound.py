"""The inbound functions, called as a login that holds only monitoring_inbound, as `pgalert serve` does."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.helpers import SEED_CRITICAL, deliveries

M = dt.timedelta(minutes=1)


def provider_key(conn, alert_id: int) -> str:
    return conn.execute("SELECT 'pgalert-' || left(replace(installation_id::text, '-', ''), 8) || '-' || %s "
                        "FROM _monitoring_installation", (alert_id,)).fetchone()[0]


def sent(conn, alert_id: int) -> None:
    """The trigger deliveries of an alert went out, as a dispatcher would record them."""
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', completed_at = now(), attempts = 1 "
                 "WHERE alert_id = %s AND action = 'trigger'", (alert_id,))


def act(inbound, alert_id, action, receipt="r1", via="pagerduty", actor="Alice", at=None, member=None):
    return inbound.execute("SELECT * FROM monitoring_inbound_act(%s, %s, %s, %s, %s, %s, NULL, %s)",
                           (via, receipt, alert_id, action, actor, at, member)).fetchone()


@pytest.fixture
def inbound(connect):
    return connect("monitoring_inbound")


@pytest.fixture
def paged(conn):
    """The seed's critical alert, detected ten minutes ago and paged at PagerDuty, Slack and Sentry."""
    conn.execute("SELECT monitoring_raise_alert('payment_failure', 'critical', 'Test', 'Test PagerDuty', "
                 "p_at => now() - interval '10 minutes')")
    sent(conn, 1)
    return 1


def test_an_acknowledge_from_pagerduty_is_recorded_with_its_time_and_not_echoed(conn, inbound, paged):
    at = conn.execute("SELECT created_at + interval '90 seconds' FROM monitoring_alerts").fetchone()[0]
    assert act(inbound, paged, "acknowledge", at=at) == ("acknowledged", 1, "acknowledged", "Alice")
    row = conn.execute("SELECT acknowledged_at, acknowledged_by, acknowledged_via FROM monitoring_alerts").fetchone()
    assert row == (at, "Alice", "pagerduty")
    # Slack hears of it; PagerDuty, where it happened, is not told again; Sentry takes no acknowledge
    assert [d for d in deliveries(conn, 1) if d[1] == "acknowledge"] == [("slack", "acknowledge", "pending")]
    assert conn.execute("SELECT context->>'via' FROM monitoring_deliveries WHERE action = 'acknowledge'").fetchone() == ("pagerduty",)
    assert conn.execute("SELECT acknowledged_at - detected_at FROM monitoring_sla_metrics WHERE alert_id = 1").fetchone() == \
        (dt.timedelta(seconds=90),)  # MTTA from the responder's time


def test_a_repeated_webhook_acts_once(conn, inbound, paged):
    assert act(inbound, paged, "acknowledge", receipt="wh-1")[0] == "acknowledged"
    assert act(inbound, paged, "acknowledge", receipt="wh-1")[0] == "duplicate"
    assert act(inbound, paged, "resolve", receipt="wh-1")[0] == "duplicate"  # same delivery id: the same webhook
    assert conn.execute("SELECT status FROM monitoring_alerts").fetchone() == ("acknowledged",)
    assert conn.execute("SELECT count(*) FROM monitoring_inbound_actions").fetchone() == (1,)


def test_concurrent_copies_of_one_webhook_give_one_state_change(conn, connect, paged):
    sessions = [connect("monitoring_inbound") for _ in range(2)]
    holder = connect()
    holder.execute("BEGIN")
    holder.execute("SELECT FROM monitoring_alerts WHERE id = 1 FOR UPDATE")  # both calls queue behind this
    outcomes: list[str] = []
    threads = [threading.Thread(target=lambda s=s: outcomes.append(act(s, paged, "resolve", receipt="same")[0]))
               for s in sessions]
    for thread in threads:
        thread.start()
    # wait (on a condition, not a clock) until both sessions are blocked, then let them go
    while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND datname = current_database() AND query LIKE '%monitoring_inbound_act%'").fetchone()[0] < 1:
        threading.Event().wait(0.01)
    holder.execute("COMMIT")
    for thread in threads:
        thread.join(10)
    assert sorted(outcomes) == ["duplicate", "resolved"]
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE action = 'resolve'").fetchone() == (1,)  # slack


def test_two_providers_acknowledging_at_once_change_the_alert_once(conn, inbound, paged):
    assert act(inbound, paged, "acknowledge", receipt="pd", via="pagerduty")[0] == "acknowledged"
    assert act(inbound, paged, "acknowledge", receipt="sl", via="slack")[0] == "already_acknowledged"
    assert conn.execute("SELECT acknowledged_via FROM monitoring_alerts").fetchone() == ("pagerduty",)


def test_a_slack_member_is_named_by_monitoring_people_and_a_stranger_by_id(conn, inbound, paged):
    conn.execute("UPDATE monitoring_people SET slack_member_id = 'U0ANA' WHERE name = 'primary_engineer_1'")
    assert act(inbound, paged, "acknowledge", receipt="a", via="slack", actor="ana.s", member="U0ANA")[3] == "primary_engineer_1"
    assert act(inbound, paged, "resolve", receipt="b", via="slack", actor=None, member="U0NOBODY")[3] == "slack user U0NOBODY"
    assert conn.execute("SELECT acknowledged_by, resolved_by, resolved_via FROM monitoring_alerts").fetchone() == \
        ("primary_engineer_1", "slack user U0NOBODY", "slack")


def test_a_provider_clock_ahead_or_behind_cannot_break_the_alert_times(conn, inbound, paged):
    created = conn.execute("SELECT created_at FROM monitoring_alerts").fetchone()[0]
    act(inbound, paged, "acknowledge", receipt="a", at=created - 10 * M)  # before the alert existed
    act(inbound, paged, "resolve", receipt="b", at=created + 600 * M)  # in the future
    acked, resolved = conn.execute("SELECT acknowledged_at, resolved_at FROM monitoring_alerts").fetchone()
    # a time before the alert existed is when pgalert heard of it, not created_at: MTTA is not made zero (#22, 10)
    assert acked > created + 9 * M and acked <= resolved <= conn.execute("SELECT now()").fetchone()[0]


def test_an_unknown_or_foreign_incident_is_recorded_and_changes_nothing(conn, inbound, paged):
    assert act(inbound, None, "acknowledge", receipt="x")[0] == "unknown_alert"
    assert act(inbound, 999, "acknowledge", receipt="y")[0] == "unknown_alert"
    assert conn.execute("SELECT status FROM monitoring_alerts").fetchone() == ("open",)
    assert conn.execute("SELECT outcome FROM monitoring_inbound_actions ORDER BY id").fetchall() == [("unknown_alert",)] * 2


def test_find_alert_by_key_of_this_installation_and_by_remembered_reference(conn, inbound, paged):
    key = provider_key(conn, paged)
    find = "SELECT monitoring_inbound_find_alert('pagerduty', %s, %s)"
    assert inbound.execute(find, (key, "PINC1")).fetchone() == (1,)
    assert inbound.execute(find, (None, "PINC1")).fetchone() == (1,)  # the incident id alone, remembered
    other_installation = "pgalert-00000000-1" if not key.startswith("pgalert-00000000") else "pgalert-11111111-1"
    for foreign in (other_installation, "pgalert-x-1", "1", "", "pgalert-" + key[8:16] + "-99999999999999999999"):
        assert inbound.execute(find, (foreign, None)).fetchone() == (None,)


def test_unacknowledged_reopens_and_the_next_acknowledge_reaches_the_providers_again(conn, inbound, paged):
    act(inbound, paged, "acknowledge", receipt="1", via="slack")
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', completed_at = now() WHERE action = 'acknowledge'")
    assert act(inbound, paged, "unacknowledge", receipt="2")[:3] == ("reopened", 1, "open")
    assert conn.execute("SELECT status, acknowledged_via FROM monitoring_alerts").fetchone() == ("open", "slack")  # first ack kept for MTTA
    # Opsgenie acts only on what it got (#22, 7): here it had the trigger too
    conn.execute("INSERT INTO monitoring_deliveries (alert_id, provider, action, status, completed_at, attempts) VALUES (1, 'opsgenie', 'trigger', 'succeeded', now(), 1)")
    assert act(inbound, paged, "acknowledge", receipt="3", via="opsgenie")[0] == "acknowledged"
    assert conn.execute("SELECT provider, target = '', status FROM monitoring_deliveries WHERE action = 'acknowledge' "
                        "ORDER BY id").fetchall() == [("pagerduty", False, "succeeded"), ("pagerduty", True, "pending"),
                                                      ("slack", True, "pending")]


def test_reopen_of_a_resolved_alert_drops_unsent_follow_ups_and_respects_a_newer_alert(conn, inbound, paged):
    act(inbound, paged, "resolve", receipt="1", via="slack")
    assert conn.execute("SELECT provider, status FROM monitoring_deliveries WHERE action = 'resolve'").fetchall() == [("pagerduty", "pending")]
    assert act(inbound, paged, "reopen", receipt="2")[:3] == ("reopened", 1, "open")
    assert conn.execute("SELECT status, last_error FROM monitoring_deliveries WHERE action = 'resolve'").fetchone() == \
        ("skipped", "not sent: reopened via pagerduty by Alice")
    assert conn.execute("SELECT resolved_at, resolved_via FROM monitoring_alerts").fetchone() == (None, None)
    act(inbound, paged, "resolve", receipt="3", via="slack")
    conn.execute(SEED_CRITICAL)  # the problem again: a new alert of the same key
    assert act(inbound, paged, "reopen", receipt="4")[0] == "superseded"
    assert conn.execute("SELECT status FROM monitoring_alerts WHERE id = 1").fetchone() == ("resolved",)


@pytest.mark.escalation
def test_unacknowledged_resumes_the_escalation_where_it_paused(conn, inbound):
    t = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    conn.execute("UPDATE monitoring_oncall_schedules SET rotation_start = %s WHERE name = 'primary'", (t.date(),))
    alert = conn.execute("SELECT monitoring_raise_alert('payment_failure', 'critical', 'Down', p_at => %s)", (t,)).fetchone()[0]
    sent(conn, alert)

    def notified():
        return [p for (p,) in conn.execute("SELECT context->>'person' FROM monitoring_deliveries WHERE alert_id = %s "
                                           "AND action = 'notify' AND provider = 'slack' ORDER BY id", (alert,))]

    act(inbound, alert, "acknowledge", receipt="ack", at=t + 4 * M)
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 9 * M,))
    act(inbound, alert, "unacknowledge", receipt="unack", at=t + 10 * M)  # paused 6 minutes
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 20 * M,))
    assert notified() == ["primary_engineer_1"]  # the backup's 15 minutes are not up: 6 of them were paused
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 21 * M,))
    assert notified() == ["primary_engineer_1", "primary_engineer_2"]


@pytest.mark.escalation
def test_an_escalation_finished_by_the_acknowledge_resumes_too(conn, inbound):
    t = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    conn.execute("UPDATE monitoring_oncall_schedules SET rotation_start = %s WHERE name = 'primary'", (t.date(),))
    alert = conn.execute("SELECT monitoring_raise_alert('payment_failure', 'critical', 'Down', p_at => %s)", (t,)).fetchone()[0]
    sent(conn, alert)
    act(inbound, alert, "acknowledge", receipt="ack", at=t + 4 * M)
    conn.execute("SELECT monitoring_run_oncall(%s)", (t + 15 * M,))
    assert conn.execute("SELECT finish_reason FROM monitoring_alert_escalations").fetchone() == ("acknowledged",)
    act(inbound, alert, "unacknowledge", receipt="unack", at=t + 30 * M)  # paused 26 minutes
    assert conn.execute("SELECT finish_reason, next_step_at FROM monitoring_alert_escalations").fetchone() == (None, t + 41 * M)


TOKENS = {"prometheus": b"t1", "grafana": b"t2"}


def raise_batch(inbound, alerts, client="prometheus", via="alertmanager"):
    return inbound.execute("SELECT outcome, alert_id, error FROM monitoring_inbound_raise(%s, %s, %s)",
                           (via, hashlib.sha256(TOKENS[client]).digest(), Jsonb(alerts))).fetchall()


def am_alert(status, fingerprint="fp1", starts="2026-11-30T10:00:00Z", **extra):
    return {"status": status, "alert_type": "HighLatency", "severity": "warning", "title": "p99 over 2s",
            "dedup_key": f"alertmanager:{fingerprint}", "instance": f"{fingerprint}@{starts}", **extra}


@pytest.fixture
def client(conn):
    conn.execute("SELECT monitoring_create_api_client('prometheus', %s)", (hashlib.sha256(b"t1").digest(),))
    conn.execute("SELECT monitoring_create_api_client('grafana', %s)", (hashlib.sha256(b"t2").digest(),))


def test_alertmanager_repeats_are_no_ops_and_a_resolve_closes_the_alert(conn, inbound, client):
    assert raise_batch(inbound, [am_alert("firing")]) == [("opened", 1, None)]
    assert raise_batch(inbound, [am_alert("firing")]) == [("repeat", 1, None)]
    assert conn.execute("SELECT occurrence_count, severity, status FROM monitoring_alerts").fetchone() == (1, "warning", "open")
    assert raise_batch(inbound, [am_alert("resolved", resolved_at="2026-11-30T10:05:00Z")]) == [("resolved", 1, None)]
    assert raise_batch(inbound, [am_alert("resolved")]) == [("already_resolved", 1, None)]
    # a late repeat of the same firing instance does not open it again; a new start of the alert does
    assert raise_batch(inbound, [am_alert("firing")]) == [("already_resolved", 1, None)]
    assert raise_batch(inbound, [am_alert("firing", starts="2026-11-30T11:00:00Z")]) == [("opened", 2, None)]
    assert conn.execute("SELECT resolved_via, resolved_by FROM monitoring_alerts WHERE id = 1").fetchone() == ("alertmanager", "prometheus")


def test_one_bad_alert_in_a_batch_is_rejected_with_its_reason_and_the_rest_count(conn, inbound, client):
    rows = raise_batch(inbound, [am_alert("firing", "a"), am_alert("firing", "b", title=" "), am_alert("firing", "c", severity="loud"),
                                 am_alert("sideways", "d"), am_alert("firing", "e", title="x" * 2000)])
    assert [r[0] for r in rows] == ["opened", "rejected", "rejected", "rejected", "rejected"]
    assert "title is required" in rows[1][2] and "loud" in rows[2][2] and "firing or resolved" in rows[3][2]
    assert "over the limit" in rows[4][2]
    assert conn.execute("SELECT count(*) FROM monitoring_alerts").fetchone() == (1,)


def test_a_client_cannot_resolve_what_another_raised(conn, inbound, client):
    conn.execute(SEED_CRITICAL)  # an app's alert, key payment_failure
    raise_batch(inbound, [{"status": "firing", "alert_type": "disk", "severity": "info", "title": "disk", "dedup_key": "disk"}], via="api")
    assert raise_batch(inbound, [{"status": "resolved", "dedup_key": "payment_failure"}], client="grafana", via="api") == \
        [("not_raised_by_client", None, None)]
    assert raise_batch(inbound, [{"status": "resolved", "dedup_key": "disk"}], client="grafana", via="api") == \
        [("not_raised_by_client", None, None)]
    assert raise_batch(inbound, [{"status": "resolved", "dedup_key": "disk"}], via="api") == [("resolved", 2, None)]
    assert conn.execute("SELECT status FROM monitoring_alerts ORDER BY id").fetchall() == [("open",), ("resolved",)]


def test_a_repeat_of_another_raisers_alert_only_counts_and_gives_no_right_to_resolve(conn, inbound, client):
    """Dedup keys are easy to guess: a client that repeats one must not take the alert over (#22, 8)."""
    conn.execute(SEED_CRITICAL)  # an app's alert
    mine = {"status": "firing", "alert_type": "disk", "severity": "info", "title": "disk 91%", "dedup_key": "disk",
            "details": {"host": "db1"}}
    raise_batch(inbound, [mine], via="api")
    for key, alert_id in (("payment_failure", 1), ("disk", 2)):
        takeover = {"status": "firing", "alert_type": "x", "severity": "critical", "title": "click here",
                    "message": "evil", "dedup_key": key, "details": {"runbook_url": "https://evil.example"}}
        assert raise_batch(inbound, [takeover], client="grafana", via="api") == [("deduplicated", alert_id, None)]
        assert raise_batch(inbound, [{"status": "resolved", "dedup_key": key}], client="grafana", via="api") == \
            [("not_raised_by_client", None, None)]
    rows = conn.execute("SELECT title, message, severity, details ? 'runbook_url', occurrence_count, status "
                        "FROM monitoring_alerts ORDER BY id").fetchall()
    assert rows == [("Test", "Test PagerDuty", "critical", False, 2, "open"), ("disk 91%", "", "info", False, 2, "open")]
    # the raiser's own repeat still updates its alert, and it still resolves it
    raise_batch(inbound, [dict(mine, title="disk 95%")], via="api")
    assert conn.execute("SELECT title, occurrence_count FROM monitoring_alerts WHERE id = 2").fetchone() == ("disk 95%", 3)
    assert raise_batch(inbound, [{"status": "resolved", "dedup_key": "disk"}], via="api") == [("resolved", 2, None)]


# What serve's login might pass as a provider's name, to record an API client as the raiser of an app's alert
# and so give it the right to resolve that alert (#35, 17).
RAISER_VIAS = ["raised_by:grafana", "raised_by:grafana ", "RAISED_BY:grafana", "raised_by:", "a:b", "pagerduty:x", "",
               None, "x" * 40]


@pytest.mark.parametrize("via", RAISER_VIAS)
def test_serves_login_cannot_make_a_client_the_raiser_of_an_alert_it_did_not_raise(conn, inbound, client, via):
    alert_id = conn.execute(SEED_CRITICAL.rstrip(";") + " RETURNING id").fetchone()[0]
    installation = conn.execute("SELECT left(replace(installation_id::text, '-', ''), 8) "
                                "FROM _monitoring_installation").fetchone()[0]
    for key, reference in ((f"pgalert-{installation}-{alert_id}", str(alert_id)), (None, str(alert_id))):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a provider name"):
            inbound.execute("SELECT monitoring_inbound_find_alert(%s, %s, %s)", (via, key, reference))
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a provider name"):
        raise_batch(inbound, [{"status": "firing", "alert_type": "x", "severity": "info", "title": "t",
                               "dedup_key": "payment_failure", "instance": "i"}], client="grafana", via=via)
    assert conn.execute("SELECT count(*) FROM _monitoring_alert_references WHERE via LIKE 'raised_by:%%'").fetchone() == (0,)
    assert raise_batch(inbound, [{"status": "resolved", "dedup_key": "payment_failure"}], client="grafana", via="api") == \
        [("not_raised_by_client", None, None)]
    assert conn.execute("SELECT status FROM monitoring_alerts WHERE id = %s", (alert_id,)).fetchone() == ("open",)


def test_a_batch_with_an_unknown_or_revoked_token_writes_nothing(conn, inbound, client):
    firing = [{"status": "firing", "alert_type": "disk", "severity": "info", "title": "disk"}]
    with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification, match="not one of an active API client"):
        inbound.execute("SELECT * FROM monitoring_inbound_raise('api', %s, %s)", (hashlib.sha256(b"nope").digest(), Jsonb(firing)))
    conn.execute("SELECT monitoring_revoke_api_client('prometheus')")
    with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification):
        raise_batch(inbound, firing)
    assert conn.execute("SELECT count(*) FROM monitoring_alerts").fetchone() == (0,)


def test_tokens_are_kept_as_hashes_and_stop_working_when_revoked(conn, connect, client):
    inbound = connect("monitoring_inbound")
    assert inbound.execute("SELECT monitoring_inbound_client(%s)", (hashlib.sha256(b"t1").digest(),)).fetchone() == ("prometheus",)
    assert inbound.execute("SELECT monitoring_inbound_client(%s)", (hashlib.sha256(b"t3").digest(),)).fetchone() == (None,)
    admin = connect("monitoring_admin")
    assert admin.execute("SELECT monitoring_revoke_api_client('prometheus')").fetchone() == (True,)
    assert admin.execute("SELECT monitoring_revoke_api_client('prometheus')").fetchone() == (False,)
    assert inbound.execute("SELECT monitoring_inbound_client(%s)", (hashlib.sha256(b"t1").digest(),)).fetchone() == (None,)
    with pytest.raises(psycopg.errors.UniqueViolation, match="exists already"):
        admin.execute("SELECT monitoring_create_api_client('grafana', %s)", (hashlib.sha256(b"t9").digest(),))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        admin.execute("SELECT token_sha256 FROM monitoring_api_clients")


@pytest.mark.parametrize("statement", [
    "SELECT * FROM monitoring_alerts",
    "SELECT * FROM monitoring_api_clients",
    SEED_CRITICAL,
    "UPDATE monitoring_alerts SET status = 'resolved'",
    "SELECT monitoring_acknowledge_alert(1)",
    "SELECT public._monitoring_acknowledge(1, 'x', NULL, now(), 'pagerduty')",
    "SELECT public._monitoring_reopen(1, 'x', now(), 'pagerduty')",
    "SELECT * FROM monitoring_claim_deliveries('x')",
    "SELECT monitoring_create_api_client('me', sha256('x'))",
    "INSERT INTO monitoring_inbound_actions (via, action) VALUES ('x', 'resolve')",
    "SET ROLE monitoring_admin",
])
def test_the_inbound_role_can_do_nothing_else(conn, inbound, paged, statement):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        inbound.execute(statement)


def test_the_inbound_functions_cannot_be_widened_through_search_path_or_input(conn, inbound, paged):
    # a caller's own objects shadowing what the functions use are never consulted (search_path is pinned)
    inbound.execute("SET search_path = pg_temp, public")
    inbound.execute("CREATE TEMP TABLE monitoring_alerts (id bigint, status text)")
    inbound.execute("CREATE FUNCTION pg_temp.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT 'infinity'::timestamptz $$")
    assert act(inbound, paged, "acknowledge", receipt="r")[:3] == ("acknowledged", 1, "acknowledged")
    # text is only ever data
    assert act(inbound, paged, "resolve", receipt="'); DROP TABLE monitoring_alerts; --", actor="x'); --")[0] == "resolved"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a provider name"):
        act(inbound, paged, "acknowledge", receipt="v", via="sql; DROP")
    with pytest.raises(psycopg.errors.CheckViolation):
        act(inbound, paged, "delete", receipt="w")
    assert conn.execute("SELECT count(*) FROM public.monitoring_alerts").fetchone() == (1,)


@pytest.mark.parametrize(("via", "action"), [("pagerduty", "acknowledge"), ("opsgenie", "resolve"), ("slack", "resolve"),
                                             ("jsm", "acknowledge"), ("teams", "acknowledge")])
def test_a_provider_acts_only_on_alerts_a_channel_of_its_kind_was_sent(conn, inbound, via, action):
    """#22, 7: a warning went to Opsgenie, Slack and Sentry only; a critical to PagerDuty only."""
    conn.execute("DELETE FROM monitoring_routes WHERE severity = 'critical' AND provider <> 'pagerduty'")
    warning = conn.execute("SELECT monitoring_raise_alert('disk_filling', 'warning', 'Disk 85%')").fetchone()[0]
    critical = conn.execute("SELECT monitoring_raise_alert('payment_failure', 'critical', 'Payments')").fetchone()[0]
    sent(conn, warning)
    sent(conn, critical)
    got = {a for (a,) in conn.execute("SELECT DISTINCT d.alert_id FROM monitoring_deliveries AS d JOIN monitoring_providers AS p "
                                      "ON p.provider = d.provider WHERE p.kind = %s", (via,))}
    for receipt, alert in enumerate((warning, critical)):
        outcome = act(inbound, alert, action, receipt=f"r{receipt}", via=via)[0]
        assert (outcome != "not_sent_there") is (alert in got), (alert, outcome)
        if alert not in got:
            assert conn.execute("SELECT status FROM monitoring_alerts WHERE id = %s", (alert,)).fetchone() == ("open",)
    # a trigger still pending (never sent) gives no right either
    pending = conn.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'DB')").fetchone()[0]
    assert act(inbound, pending, action, receipt="r9", via="pagerduty")[0] == "not_sent_there"


def test_a_stop_or_start_acts_once_per_receipt_and_outlives_the_purge(conn, inbound):
    """A captured STOP sent again after START must not silence a person's texts (#35 item 10): it is recorded
    under its receipt, with no actor (the number is its person's secret), and the purge keeps it."""
    conn.execute("INSERT INTO monitoring_people (name) VALUES ('alice')")
    conn.execute("SELECT monitoring_add_contact_method('alice', 'sms', '+14155550123')")

    def texted(receipt: str, stop: bool):
        return inbound.execute("SELECT monitoring_inbound_contact_opt_out(%s, '+14155550123', %s)",
                               (receipt, stop)).fetchone()[0]

    def opted_out() -> bool:
        return conn.execute("SELECT opted_out_at IS NOT NULL FROM monitoring_contact_methods").fetchone()[0]

    assert texted("twilio:stop", True) == 1 and opted_out()
    assert texted("twilio:start", False) == 1 and not opted_out()
    assert texted("twilio:stop", True) is None and not opted_out()  # the replay
    conn.execute("UPDATE monitoring_inbound_actions SET received_at = now() - interval '2 years'")
    conn.execute("SELECT monitoring_purge_history()")
    assert conn.execute("SELECT action, outcome, actor FROM monitoring_inbound_actions ORDER BY id").fetchall() == [
        ("stop", "opted_out", None), ("start", "opted_in", None)]
    assert texted("twilio:stop", True) is None and not opted_out()
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        texted("", True)
