"""The dispatcher end to end: real process, real PostgreSQL, fake providers that behave like the real ones."""

from __future__ import annotations

import json
import signal
import urllib.request
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg.types.json import Jsonb

from devtools import fake_smtp
from devtools.fake_providers import PAGERDUTY_KEY, PAGERDUTY_KEY_PAYMENTS, SLACK_PATH, SLACK_PATH_PAYMENTS, Fault
from devtools.localpg import CRON_DATABASE, LocalServer, free_port
from devtools.serve import role_login
from dispatcher.migrate import migrate
from tests.certificates import self_signed
from tests.helpers import FAST, SEED_CRITICAL, TWO_TEAMS, DispatcherProcess, all_final, statuses, wait_until


def test_seed_alert_reaches_pagerduty_slack_and_sentry_then_ack_and_resolve_follow(conn, fake, start_dispatcher):
    dispatcher = start_dispatcher()
    conn.execute(SEED_CRITICAL)
    wait_until(lambda: all_final(conn))
    assert sorted(r.provider for r in fake.received) == ["pagerduty", "sentry", "slack"]
    assert all(r.status in (200, 202) for r in fake.received)
    conn.execute("SELECT monitoring_acknowledge_alert(1, 'alice', 'on it')")
    conn.execute("SELECT monitoring_resolve_alert(1, 'alice')")
    wait_until(lambda: all_final(conn) and len(statuses(conn)) == 7)
    assert all(status == "succeeded" for _, _, status in statuses(conn))
    pd = [r.json for r in fake.requests_for("pagerduty")]
    assert [e["event_action"] for e in pd] == ["trigger", "acknowledge", "resolve"]
    assert len({e["dedup_key"] for e in pd}) == 1
    slack = [r.json["text"] for r in fake.requests_for("slack")]
    assert "Acknowledged" in slack[1] and "Resolved" in slack[2]
    assert dispatcher.stop() == 0


def test_warning_goes_to_opsgenie_and_is_closed_by_alias(conn, fake, start_dispatcher):
    start_dispatcher()
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message) VALUES ('disk', 'warning', 'Disk 91%', 'db-1')")
    wait_until(lambda: all_final(conn))
    conn.execute("SELECT monitoring_resolve_alert(1, 'bob')")
    wait_until(lambda: len(fake.requests_for("opsgenie")) == 2)
    create, close = fake.requests_for("opsgenie")
    assert create.path == "/v2/alerts" and create.json["priority"] == "P2"
    assert close.path == f"/v2/alerts/{create.json['alias']}/close" and close.query == {"identifierType": ["alias"]}


def test_the_readme_recipe_moves_the_warning_route_from_opsgenie_to_jsm(conn, fake, start_dispatcher):
    # README, "From Opsgenie to Jira Service Management": one UPDATE moves every route, the failure route too
    conn.execute("UPDATE monitoring_routes SET provider = 'jsm' WHERE provider = 'opsgenie'")
    start_dispatcher()
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message) VALUES ('disk', 'warning', 'Disk 91%', 'db-1')")
    wait_until(lambda: all_final(conn))
    conn.execute("SELECT monitoring_acknowledge_alert(1, 'bob', 'on it')")
    conn.execute("SELECT monitoring_resolve_alert(1, 'bob')")
    wait_until(lambda: len(fake.requests_for("jsm", 202)) == 3)
    create, ack, close = fake.requests_for("jsm")
    prefix = "/jsm/ops/integration/v2/alerts"
    assert create.path == prefix and create.json["priority"] == "P2" and create.json["message"] == "Disk 91%"
    assert ack.path == f"{prefix}/{create.json['alias']}/acknowledge" and ack.json["note"] == "on it"
    assert close.path == f"{prefix}/{create.json['alias']}/close" and close.query == {"identifierType": ["alias"]}
    assert fake.requests_for("opsgenie") == []


def test_a_dispatcher_that_was_down_catches_up(conn, fake, start_dispatcher):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) SELECT 'down' || g, 'info', 't' FROM generate_series(1, 20) g")
    start_dispatcher()
    wait_until(lambda: all_final(conn))
    assert len(fake.requests_for("slack", 200)) == 20


def test_server_errors_and_dropped_connections_are_retried(conn, fake, start_dispatcher):
    # A kept-alive connection that dies before any byte of reply looks exactly like one the server closed while
    # idle, so libcurl sends again at once on another connection: that drop is not an attempt of ours (a drop
    # on a fresh connection is: tests/unit/test_http.py). A reply cut off midway always is.
    fake.script("pagerduty", Fault(500), Fault(drop=True), Fault(502, b"<html>bad gateway</html>"),
                Fault(202, b'{"status":"success","message":"Event processed"}', cut=True))
    start_dispatcher()
    conn.execute(SEED_CRITICAL)
    wait_until(lambda: all_final(conn))
    attempts = conn.execute("SELECT attempt, outcome, http_status, error FROM monitoring_delivery_attempts a "
                            "JOIN monitoring_deliveries d ON d.id = a.delivery_id WHERE provider = 'pagerduty' ORDER BY attempt").fetchall()
    assert [(a, o, s) for a, o, s, _ in attempts] == [(1, "retry", 500), (2, "retry", 502), (3, "retry", None), (4, "succeeded", 202)]
    assert "bytes missing" in attempts[2][3]
    assert [r.status for r in fake.requests_for("pagerduty")] == [500, 0, 502, 202, 202]


def test_a_hanging_provider_times_out_and_is_retried(conn, fake, start_dispatcher):
    fake.script("slack", Fault(200, b"ok", hang=3))
    start_dispatcher()
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'info', 't')")
    wait_until(lambda: all_final(conn))
    errors = conn.execute("SELECT outcome, error FROM monitoring_delivery_attempts ORDER BY attempt").fetchall()
    assert errors[0] == ("retry", "timed out after 1s") and errors[-1][0] == "succeeded"


def test_429_retry_after_is_honoured(conn, fake, start_dispatcher):
    fake.script("slack", Fault(429, b"rate_limited", (("Retry-After", "2"),)))
    start_dispatcher()
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'info', 't')")
    wait_until(lambda: all_final(conn))
    first, second = fake.requests_for("slack")
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 2.0  # never sooner than asked, although backoff alone would allow 0.2 s


def test_a_final_error_fails_at_once_and_a_lost_page_is_raised_elsewhere(conn, fake, start_dispatcher):
    fake.script("pagerduty", Fault(400, b'{"status":"invalid event","message":"Event object is invalid"}'))
    start_dispatcher()
    conn.execute(SEED_CRITICAL)
    wait_until(lambda: conn.execute("SELECT count(*) FROM monitoring_alerts WHERE alert_type = 'pgalert_delivery_failure'").fetchone()[0])
    wait_until(lambda: all_final(conn))
    failed = conn.execute("SELECT attempts, last_http_status, last_error FROM monitoring_deliveries WHERE provider = 'pagerduty'").fetchone()
    assert failed[0:2] == (1, 400) and "invalid event" in failed[2]
    texts = [r.json["text"] for r in fake.requests_for("slack")]
    assert any("No pager received: Test" in t for t in texts)
    assert len(fake.requests_for("opsgenie")) == 1  # the other pager was tried


def test_attempts_run_out(conn, fake, start_dispatcher):
    fake.script("webhook", *[Fault(503)] * 3)
    conn.execute("INSERT INTO monitoring_routes (alert_type, severity, provider) VALUES ('hook', 'info', 'webhook')")
    start_dispatcher("--max-attempts", "3")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('hook', 'info', 't')")
    wait_until(lambda: all_final(conn))
    assert conn.execute("SELECT status, attempts, last_error FROM monitoring_deliveries").fetchone() == (
        "failed", 3, 'gave up after 3 attempts; last: HTTP 503: {"status":"error","message":"Internal Server Error"}')


def test_unconfigured_providers_are_skipped_visibly(conn, fake, start_dispatcher):
    env = {k: v for k, v in fake.env().items() if not k.startswith("PAGERDUTY")}
    dispatcher = start_dispatcher(env=env)
    conn.execute(SEED_CRITICAL)
    wait_until(lambda: all_final(conn))
    assert conn.execute("SELECT status, last_error FROM monitoring_deliveries WHERE provider = 'pagerduty'").fetchone() == (
        "skipped", "PAGERDUTY_INTEGRATION_KEY is not set")
    assert "provider not configured" in dispatcher.output


def test_garbage_replies_never_crash_the_daemon(conn, fake, start_dispatcher):
    fake.script("pagerduty", Fault(202, b"\xff\xfe garbage"))
    fake.script("sentry", Fault(200, b""))
    fake.script("slack", Fault(200, b"\x00" * 100))
    dispatcher = start_dispatcher()
    conn.execute(SEED_CRITICAL)
    wait_until(lambda: all_final(conn))
    assert statuses(conn) == [("pagerduty", "trigger", "succeeded"), ("slack", "trigger", "failed"),
                              ("sentry", "trigger", "succeeded")]
    assert dispatcher.process.poll() is None


def test_two_dispatchers_send_each_delivery_once(conn, fake, start_dispatcher):
    start_dispatcher(name="a")
    start_dispatcher(name="b")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) SELECT 'x' || g, 'critical', 't' FROM generate_series(1, 150) g")
    wait_until(lambda: all_final(conn))
    sent = [r.json["dedup_key"] for r in fake.requests_for("pagerduty", 202)]
    assert len(sent) == len(set(sent)) == 150
    # each provider accepted each alert once (a retry after a dropped connection is allowed, a second success not)
    assert len(fake.requests_for("slack", 200)) == 150 and len(fake.requests_for("sentry", 200)) == 150
    # SKIP LOCKED promises that no delivery is claimed twice, not that the work is shared fairly: one dispatcher
    # may well claim all of it before the other is listening (the next test shows sharing where it is certain)
    by = dict(conn.execute("SELECT dispatcher, count(*) FROM monitoring_delivery_attempts "
                           "WHERE outcome = 'succeeded' GROUP BY 1").fetchall())
    assert sum(by.values()) == 450 and set(by) <= {"a", "b"}
    assert conn.execute("SELECT count(DISTINCT delivery_id) FROM monitoring_delivery_attempts WHERE outcome = 'succeeded'").fetchone() == (450,)


@pytest.mark.parametrize("dispatchers", [2, 4])
def test_dispatchers_draining_critical_alerts_together_never_deadlock(conn, fake, start_dispatcher, dispatchers):
    """Recording results touches SLA rows of many alerts at once (sql/sla.sql locks them in alert order). Several
    dispatchers racing over one backlog is where a lock-order bug shows, as a deadlock PostgreSQL counts."""
    def deadlocks() -> int:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        return conn.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]

    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, dedup_key) "
                 "SELECT 'race_' || (g % 7), 'critical', 't', 'race-' || g FROM generate_series(1, 1000) g")
    before = deadlocks()
    started = [start_dispatcher(name=f"racer{i}") for i in range(dispatchers)]
    wait_until(lambda: all_final(conn), timeout=120)
    for dispatcher in started:  # a backend reports its counters when it ends, so stop them before reading
        assert dispatcher.stop() == 0
        assert "deadlock" not in dispatcher.output
    wait_until(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND application_name LIKE 'pgalert % racer%'").fetchone() == (0,))
    assert deadlocks() == before
    assert conn.execute("SELECT status, count(*) FROM monitoring_deliveries GROUP BY 1").fetchall() == [("succeeded", 3000)]
    assert conn.execute("SELECT count(*), count(first_notified_at) FROM monitoring_sla_metrics").fetchone() == (1000, 1000)


def test_while_one_dispatcher_is_busy_another_takes_the_work(conn, fake, start_dispatcher):
    # a sends one request at a time and its first hangs at PagerDuty for 30 s, inside its HTTP timeout, so with
    # room for two claims (the one in flight, the one queued behind it) it claims nothing more for those 30 s:
    # whatever else is due can only be sent by b, however slowly b starts. (With the fast tests' 1 s timeout a got
    # its room back after a second and, on a loaded machine, took all the work.)
    fake.script("pagerduty", Fault(202, b"{}", hang=30))
    busy = start_dispatcher("--concurrency", "1", "--http-timeout", "40", "--lease-seconds", "50", name="a")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) SELECT 'x' || g, 'critical', 't' FROM generate_series(1, 2) g")
    wait_until(lambda: conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE claimed_by = 'a'").fetchone()[0] == 2
               and len(fake.requests_for("pagerduty")) == 1)
    start_dispatcher(name="b")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) SELECT 'y' || g, 'info', 't' FROM generate_series(1, 20) g")
    wait_until(lambda: conn.execute("SELECT count(*) FROM monitoring_delivery_attempts WHERE outcome = 'succeeded' "
                                    "AND dispatcher = 'b'").fetchone()[0] >= 20)
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE claimed_by = 'a'").fetchone() == (2,)
    assert busy.stop() == 0  # gives its two back; b sends them
    wait_until(lambda: all_final(conn))


def test_a_killed_dispatchers_claims_are_taken_over_after_the_lease(conn, fake, start_dispatcher):
    fake.script("pagerduty", Fault(202, b"{}", hang=30))
    victim = start_dispatcher(name="victim")
    conn.execute(SEED_CRITICAL)
    wait_until(lambda: fake.requests_for("pagerduty"))
    victim.stop(signal.SIGKILL)
    start_dispatcher(name="heir")
    wait_until(lambda: all_final(conn), timeout=30)
    row = conn.execute("SELECT status, attempts FROM monitoring_deliveries WHERE provider = 'pagerduty'").fetchone()
    assert row == ("succeeded", 2)
    keys = {r.json["dedup_key"] for r in fake.requests_for("pagerduty")}
    assert len(keys) == 1  # the second send carries the same key, so PagerDuty deduplicates it


def test_sigterm_releases_in_flight_work_and_exits_zero(conn, fake, start_dispatcher):
    # the send would hang for ten minutes and its timeout is longer still: exiting at all proves it was not awaited
    fake.script("slack", Fault(200, b"ok", hang=600))
    dispatcher = start_dispatcher("--http-timeout", "900", "--lease-seconds", "1200")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'info', 't')")
    wait_until(lambda: fake.requests_for("slack"))
    assert dispatcher.stop(timeout=120) == 0
    assert conn.execute("SELECT status, attempts, claimed_by FROM monitoring_deliveries").fetchone() == ("pending", 0, None)
    assert "released unfinished deliveries" in dispatcher.output


RECORDER_DIES = """
import threading
from dispatcher.worker.recorder import Recorder
complete = Recorder.complete
def dies_in_its_thread(self, session, results):
    if threading.current_thread().name == "recorder":
        raise RuntimeError("a bug in the recorder")
    complete(self, session, results)
Recorder.complete = dies_in_its_thread
"""


def test_a_dispatcher_whose_recorder_died_exits_non_zero_and_nothing_is_sent_twice(conn, fake, start_dispatcher):
    broken = start_dispatcher(name="broken", fault=RECORDER_DIES)
    conn.execute(SEED_CRITICAL)
    assert broken.process.wait(30) == 1  # its supervisor restarts it
    assert "the recorder thread died" in broken.output
    # what it sent before it stopped was recorded on its way out: the dispatcher that takes over sends none again
    assert fake.received and all_final(conn)
    start_dispatcher(name="heir")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'info', 'after')")
    wait_until(lambda: all_final(conn) and conn.execute(
        "SELECT bool_and(dispatcher = 'heir') FROM monitoring_delivery_attempts a "
        "JOIN monitoring_deliveries d ON d.id = a.delivery_id JOIN monitoring_alerts al ON al.id = d.alert_id "
        "WHERE al.title = 'after'").fetchone()[0])
    sends = conn.execute("SELECT count(*) FROM monitoring_delivery_attempts WHERE http_status IS NOT NULL").fetchone()[0]
    assert len(fake.received) == sends  # every message went out once


def test_secrets_never_reach_the_database_or_the_logs(conn, fake, start_dispatcher):
    env = fake.env()
    env["SLACK_WEBHOOK_URL"] = "http://127.0.0.1:9" + SLACK_PATH  # nothing listens
    # a provider that quotes the key back in its error, as PagerDuty's "Invalid routing key" can
    fake.script("pagerduty", Fault(400, json.dumps({"status": "invalid event", "message": "Event object is invalid",
                                                    "errors": [f"Invalid routing key: {PAGERDUTY_KEY}"]}).encode()))
    dispatcher = start_dispatcher("--max-attempts", "1", "--log-format", "json", env=env)
    conn.execute(SEED_CRITICAL)
    wait_until(lambda: all_final(conn))
    stored = json.dumps(conn.execute("SELECT json_agg(d) FROM monitoring_deliveries d").fetchone()[0])
    stored += json.dumps(conn.execute("SELECT json_agg(a) FROM monitoring_delivery_attempts a").fetchone()[0])
    assert "Failed to connect" in stored and "Invalid routing key: [redacted]" in stored
    dispatcher.stop()
    for secret in (SLACK_PATH, PAGERDUTY_KEY, env["OPSGENIE_API_KEY"], env["PGALERT_WEBHOOK_SECRET"]):
        assert secret not in stored
        assert secret not in dispatcher.output
    assert all(json.loads(line) for line in dispatcher.output.splitlines())  # --log-format json: one object a line


@pytest.fixture
def server_of_its_own() -> Iterator[LocalServer]:
    """A PostgreSQL for one test that restarts it: restarting the suite's shared server would cut every test
    running beside this one."""
    server = LocalServer(f"restart-{uuid.uuid4().hex[:6]}", free_port())
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def test_survives_a_postgresql_restart(fake, server_of_its_own, tmp_path):
    url = server_of_its_own.url(CRON_DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn, log=lambda *_: None)
    dispatcher = DispatcherProcess(role_login(url, "pgalert_restart_dispatcher", "monitoring_dispatcher"), fake.env(),
                                   [*FAST, "--dispatcher-id", "d1"], tmp_path / "d1.log")
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('before', 'info', 't')")
            wait_until(lambda: all_final(conn))
        server_of_its_own.restart()
        with psycopg.connect(url, autocommit=True) as again:
            again.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('after', 'info', 't')")
            wait_until(lambda: len(fake.requests_for("slack", 200)) == 2, timeout=40)
        assert dispatcher.process.poll() is None
        assert "reconnected" in dispatcher.output or "database unavailable" in dispatcher.output
    finally:
        dispatcher.stop(signal.SIGKILL)


def test_pacing_queues_rather_than_trips_the_rate_limit(conn, fake, start_dispatcher):
    start_dispatcher("--pacing", "pagerduty=1/0.3:1")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) SELECT 'p' || g, 'critical', 't' FROM generate_series(1, 4) g")
    wait_until(lambda: all_final(conn), timeout=30)
    pages = fake.requests_for("pagerduty")
    assert [r.status for r in pages] == [202, 202, 202, 202]
    assert min(b.at - a.at for a, b in zip(pages, pages[1:], strict=False)) >= 0.25  # one per 0.3 s, give or take the clock
    assert conn.execute("SELECT max(attempts) FROM monitoring_deliveries").fetchone() == (1,)


def mentioned_alert_ids(message: dict) -> list[int]:
    """The alert ids a Slack message speaks of: a digest's lines, or a single message's context line."""
    sections = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b]
    if message["blocks"][0]["type"] == "header" and "alert updates" in message["blocks"][0]["text"]["text"]:
        return [int(line.split("#", 1)[1].split()[0]) for text in sections for line in text.split("\n")]
    context = [e["text"] for b in message["blocks"] if b["type"] == "context" for e in b["elements"]]
    return [int(text.split("#", 1)[1].split()[0]) for text in context if "pgalert alert #" in text]


def test_a_storm_reaches_slack_as_digests_not_hours_of_single_messages(conn, fake, start_dispatcher):
    fake.slack_rate_per_second = 1 / 0.9
    start_dispatcher("--pacing", "slack=1/1:1")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) "
                 "SELECT 'storm_' || g, 'info', 'storm ' || g FROM generate_series(1, 150) g")
    wait_until(lambda: all_final(conn), timeout=30)
    posts = fake.requests_for("slack")
    assert all(r.status == 200 for r in posts) and len(posts) < 10  # not 150 messages over 150 s
    # how the pace splits the storm depends on when each claim runs: a claim that finds one Slack delivery
    # sends an ordinary message (its id in the context line), any other sends a digest (an id a line)
    mentioned = sorted(i for post in posts for i in mentioned_alert_ids(post.json))
    ids = [i for (i,) in conn.execute("SELECT id FROM monitoring_alerts ORDER BY id").fetchall()]
    assert mentioned == ids  # every alert, once
    assert conn.execute("SELECT count(*), max(attempts) FROM monitoring_deliveries WHERE status = 'succeeded'").fetchone() == (150, 1)


def test_a_storm_of_10000_critical_alerts_reaches_pagerduty_as_a_handful_of_grouped_incidents(conn, fake, start_dispatcher):
    """At PagerDuty's pace (120 a minute) 10,000 single pages take 83 minutes; grouped by alert type they are four
    incidents, sent once group_wait has passed, and every alert is counted in one of them."""
    conn.execute("INSERT INTO monitoring_group_rules (name, matchers, group_by, group_wait) VALUES "
                 "('storms', '[{\"field\": \"severity\", \"op\": \"=\", \"value\": \"critical\"}]', "
                 "'{alert_type}', '1 second')")
    start_dispatcher()
    with conn.transaction():  # the whole storm is in the groups before their first notification can be built
        for batch in range(100):
            conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, dedup_key) "
                         "SELECT 'storm_' || (g %% 4), 'critical', 'storm ' || g, 'storm:' || g "
                         "FROM generate_series(%s::integer, %s::integer) AS g", (batch * 100 + 1, batch * 100 + 100))
    wait_until(lambda: all_final(conn), timeout=60)
    pages = [r.json for r in fake.requests_for("pagerduty")]
    assert [page["event_action"] for page in pages] == ["trigger"] * 4
    assert len({page["dedup_key"] for page in pages}) == 4
    counts = [page["payload"]["custom_details"]["details"]["pgalert_group"]["alerts"] for page in pages]
    assert sum(counts) == 10_000
    assert all(page["payload"]["summary"].startswith("[2500 alerts] storm ") for page in pages)
    # every alert is accounted for: a member of a group whose page PagerDuty accepted, notified in the SLA
    assert conn.execute("""
        SELECT count(*) FROM monitoring_alerts AS a
        JOIN monitoring_alert_group_members AS m ON m.alert_id = a.id
        JOIN monitoring_deliveries AS d ON d.alert_id = m.group_alert_id AND d.provider = 'pagerduty' AND d.status = 'succeeded'
        JOIN monitoring_sla_metrics AS s ON s.alert_id = a.id AND s.first_notified_at IS NOT NULL
    """).fetchone() == (10_000,)
    # and Slack and Sentry each got four notifications, not 10,000
    assert len(fake.requests_for("slack")) == 4 and len(fake.requests_for("sentry")) == 4


def two_teams(conn, fake) -> dict[str, str]:
    """The README's two-team setup, its PagerDuty service at the fake; the dispatcher's environment for it."""
    conn.execute(TWO_TEAMS)
    conn.execute("UPDATE monitoring_providers SET settings = jsonb_build_object('events_url', %s::text) "
                 "WHERE provider = 'pagerduty_payments'", (fake.env()["PAGERDUTY_EVENTS_URL"],))
    return {**fake.env(), "PAGERDUTY_KEY_PAYMENTS": PAGERDUTY_KEY_PAYMENTS,
            "SLACK_WEBHOOK_PAYMENTS": fake.base_url + SLACK_PATH_PAYMENTS,
            # the operator lets channels use these two, the PagerDuty key also at the fake's address
            "PGALERT_CHANNEL_SECRETS": f"PAGERDUTY_KEY_PAYMENTS=pagerduty@{fake.host}, SLACK_WEBHOOK_PAYMENTS=slack"}


def test_an_admins_channel_cannot_send_the_dispatchers_secrets_to_the_admins_server(conn, fake, mail_server, start_dispatcher):
    """#22: the admin points channels of every kind that chooses its destination at a server of theirs, naming the
    dispatcher's own secrets and an unlisted one; nothing reaches those servers, and each delivery says why."""
    server, cert = mail_server
    smtp_url = server.url
    attacks = [
        ("leak_mail", "email", {"smtp_url": smtp_url, "from": "a@example.com", "to": ["b@example.com"], "username": "x"},
         {"password": "env:DATABASE_URL"}),
        ("leak_pd", "pagerduty", {"events_url": fake.env()["PAGERDUTY_EVENTS_URL"]}, {"routing_key": "env:PAGERDUTY_INTEGRATION_KEY"}),
        ("leak_hook", "webhook", {"url": fake.base_url + "/webhook"}, {"signing_secret": "env:PGALERT_WEBHOOK_SECRET"}),
        ("leak_og", "opsgenie", {"api_url": fake.env()["OPSGENIE_API_URL"]}, {"api_key": "env:UNLISTED_KEY"}),
    ]
    for name, kind, settings, refs in attacks:
        conn.execute("INSERT INTO monitoring_providers (provider, kind, settings, secret_refs) VALUES (%s, %s, %s, %s)",
                     (name, kind, Jsonb(settings), Jsonb(refs)))
        conn.execute("INSERT INTO monitoring_routes (alert_type, provider) VALUES ('exfiltrate', %s)", (name,))
    env = {**fake.env(), "REQUESTS_CA_BUNDLE": cert, "UNLISTED_KEY": "og-unlisted-secret"}
    dispatcher = start_dispatcher(env=env)
    conn.execute("SELECT monitoring_raise_alert('exfiltrate', 'critical', 'x')")
    wait_until(lambda: all_final(conn) and len(statuses(conn)) == 4)
    assert sorted(statuses(conn)) == sorted((name, "trigger", "skipped") for name, *_ in attacks)
    assert fake.received == [] and server.received == []
    errors = " ".join(e for (e,) in conn.execute("SELECT last_error FROM monitoring_deliveries"))
    assert "dispatcher's own" in errors and "PGALERT_CHANNEL_SECRETS" in errors
    assert dispatcher.stop() == 0
    for secret in ("og-unlisted-secret", PAGERDUTY_KEY):
        assert secret not in errors and secret not in dispatcher.output


def test_two_teams_each_get_their_pagerduty_service_and_slack_channel(conn, fake, start_dispatcher):
    dispatcher = start_dispatcher(env=two_teams(conn, fake))
    conn.execute(SEED_CRITICAL)
    conn.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down')")
    wait_until(lambda: all_final(conn) and len(statuses(conn)) == 5)
    assert {r.json["payload"]["class"]: r.json["routing_key"] for r in fake.requests_for("pagerduty")} == \
        {"payment_failure": PAGERDUTY_KEY_PAYMENTS, "db_down": PAGERDUTY_KEY}
    assert sorted(r.path for r in fake.requests_for("slack")) == \
        sorted(p.removeprefix("/slack") for p in (SLACK_PATH, SLACK_PATH_PAYMENTS))
    conn.execute("SELECT monitoring_acknowledge_alert(1, 'alice')")
    wait_until(lambda: all_final(conn) and len(statuses(conn)) == 7)
    ack = [r for r in fake.requests_for("pagerduty") if r.json["event_action"] == "acknowledge"]
    assert [r.json["routing_key"] for r in ack] == [PAGERDUTY_KEY_PAYMENTS]
    assert all(r.status in (200, 202) for r in fake.received)
    # the channels' secrets are named in the database, never held there, and never logged
    assert dispatcher.stop() == 0
    stored = conn.execute("SELECT string_agg(to_jsonb(p)::text, ' ') FROM monitoring_providers AS p").fetchone()[0]
    for secret in (PAGERDUTY_KEY_PAYMENTS, SLACK_PATH_PAYMENTS.rsplit("/", 1)[1]):
        assert secret not in stored and secret not in dispatcher.output
    assert "channels loaded" in dispatcher.output


def test_a_429_pauses_only_the_channel_that_got_it(conn, fake, start_dispatcher):
    env = two_teams(conn, fake)
    fake.script("slack", Fault(429, b"rate_limited", (("Retry-After", "300"),)))
    start_dispatcher("--pacing", "slack=100/1:100", env=env)
    conn.execute("SELECT monitoring_raise_alert('payment_failure', 'info', 'first')")  # only #payments
    wait_until(lambda: conn.execute("SELECT last_http_status FROM monitoring_deliveries WHERE provider = 'slack_payments'"
                                    ).fetchone() == (429,))
    conn.execute("SELECT monitoring_raise_alert('payment_failure', 'info', 'second', p_dedup_key => 'second')")
    conn.execute("SELECT monitoring_raise_alert('db_down', 'info', 'elsewhere')")  # the default channel
    wait_until(lambda: conn.execute("SELECT status FROM monitoring_deliveries WHERE provider = 'slack'").fetchone()
               == ("succeeded",))
    # #payments waits out its 300 s; the default channel did not
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE provider = 'slack_payments' "
                        "AND status = 'pending' AND next_attempt_at > now() + interval '200 seconds'").fetchone() == (2,)
    assert [r.path for r in fake.requests_for("slack", status=200)] == [SLACK_PATH.removeprefix("/slack")]


def test_an_alert_routed_to_teams_arrives_as_an_adaptive_card_and_its_resolve_follows(conn, fake, start_dispatcher):
    conn.execute("INSERT INTO monitoring_routes (alert_type, provider) VALUES ('deploy_failed', 'teams')")
    start_dispatcher()
    alert = conn.execute("SELECT monitoring_raise_alert('deploy_failed', 'warning', 'Deploy of api 4.2 failed')").fetchone()[0]
    wait_until(lambda: all_final(conn))
    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice')", (alert,))
    wait_until(lambda: all_final(conn) and len(statuses(conn)) == 2)
    posts = fake.requests_for("teams")
    assert [r.status for r in posts] == [202, 202]
    cards = [r.json["attachments"][0]["content"] for r in posts]
    assert cards[0]["body"][0]["text"] == "P1 Deploy of api 4.2 failed"
    assert cards[1]["body"][0]["text"] == "✅ Resolved by alice: Deploy of api 4.2 failed"


@pytest.fixture
def mail_server(tmp_path) -> Iterator[tuple[fake_smtp.FakeSmtp, str]]:
    cert, key = self_signed(tmp_path)
    running = fake_smtp.FakeSmtp(cert, key).start()
    yield running, cert
    running.stop()


def test_email_pages_by_mail_and_follow_ups_reply_in_the_thread(conn, fake, start_dispatcher, mail_server):
    server, cert = mail_server
    # a second channel with its password by reference, and a third whose mailbox the server refuses for good
    for name, to in (("email_payments", "payments@example.com"), ("email_finance", "refused-finance@example.com")):
        conn.execute("INSERT INTO monitoring_providers (provider, kind, settings, secret_refs) VALUES (%s, 'email', "
                     "jsonb_build_object('smtp_url', %s::text, 'from', 'alerts@example.com', 'to', jsonb_build_array(%s::text), "
                     "'username', %s::text), '{\"password\": \"env:SMTP_PASSWORD_PAYMENTS\"}')",
                     (name, server.url, to, fake_smtp.USERNAME))
    conn.execute("INSERT INTO monitoring_routes (alert_type, provider) VALUES ('deploy_failed', 'email'), "
                 "('deploy_failed', 'email_payments'), ('deploy_failed', 'email_finance')")
    env = {**fake.env(), "REQUESTS_CA_BUNDLE": cert, "EMAIL_SMTP_URL": server.url, "EMAIL_FROM": "pgalert <alerts@example.com>",
           "EMAIL_TO": "ops@example.com", "EMAIL_SMTP_USERNAME": fake_smtp.USERNAME, "EMAIL_SMTP_PASSWORD": fake_smtp.PASSWORD,
           "SMTP_PASSWORD_PAYMENTS": fake_smtp.PASSWORD,
           "PGALERT_CHANNEL_SECRETS": f"SMTP_PASSWORD_PAYMENTS=email@{urlsplit(server.url).hostname}"}
    dispatcher = start_dispatcher(env=env)
    alert = conn.execute("SELECT monitoring_raise_alert('deploy_failed', 'warning', 'Deploy of api 4.2 failed')").fetchone()[0]
    wait_until(lambda: all_final(conn) and len(statuses(conn)) == 3)
    conn.execute("SELECT monitoring_acknowledge_alert(%s, 'alice')", (alert,))
    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice')", (alert,))
    wait_until(lambda: all_final(conn) and len(statuses(conn)) == 9)
    assert sorted(statuses(conn)) == sorted(
        [(channel, action, "failed" if channel == "email_finance" else "succeeded")
         for channel in ("email", "email_payments", "email_finance") for action in ("trigger", "acknowledge", "resolve")])
    # a 5xx is final at once (the SMTP code is kept as the attempt's status), not retried for nothing
    assert conn.execute("SELECT DISTINCT last_http_status, last_error, attempts FROM monitoring_deliveries "
                        "WHERE provider = 'email_finance'").fetchall() == [(550, "SMTP 550: 550 5.1.1 No such mailbox", 1)]
    received = server.received
    assert all(r.over_tls and r.authenticated_as == fake_smtp.USERNAME for r in received)
    to_ops = [r.message for r in received if r.recipients == ("ops@example.com",)]
    assert [m["Subject"] for m in to_ops] == ["[P1 warning] Deploy of api 4.2 failed",
                                              "Re: [P1 warning] Deploy of api 4.2 failed", "Re: [P1 warning] Deploy of api 4.2 failed"]
    thread = to_ops[0]["Message-ID"]
    assert [m["In-Reply-To"] for m in to_ops] == [None, thread, thread]
    assert to_ops[2].get_body("plain").get_content().startswith("Resolved by alice")
    assert len([r for r in received if r.recipients == ("payments@example.com",)]) == 3
    assert dispatcher.stop() == 0
    stored = conn.execute("SELECT string_agg(to_jsonb(p)::text, ' ') FROM monitoring_providers AS p").fetchone()[0]
    assert fake_smtp.PASSWORD not in stored and fake_smtp.PASSWORD not in dispatcher.output


def test_metrics_and_health(conn, fake, start_dispatcher):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start_dispatcher("--metrics-port", str(port))
    conn.execute(SEED_CRITICAL)
    wait_until(lambda: all_final(conn))

    def scrape(path):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return reply.status, reply.read().decode()

    wait_until(lambda: _reachable(scrape))
    status, text = scrape("/metrics")
    assert 'pgalert_deliveries_total{action="trigger",outcome="succeeded",provider="pagerduty"} 1.0' in text
    assert "pgalert_send_seconds_bucket" in text and "pgalert_oldest_pending_seconds" in text
    status, health = scrape("/healthz")
    assert status == 200 and json.loads(health)["listener_connected"] is True


def _reachable(scrape):
    try:
        return scrape("/healthz")[0] == 200
    except OSError:
        return False


def test_a_failing_scheduler_check_never_stops_delivery(conn, fake, start_dispatcher):
    """The check watches delivery, it must not stop it: an error in it (here: no right to call it) used to end
    every claim as "database unavailable"."""
    conn.execute("REVOKE EXECUTE ON FUNCTION monitoring_check_scheduler(interval) FROM monitoring_dispatcher")
    dispatcher = start_dispatcher()
    conn.execute(SEED_CRITICAL)
    wait_until(lambda: all_final(conn))
    assert {status for _, _, status in statuses(conn)} == {"succeeded"}
    assert "checking the scheduled jobs failed" in dispatcher.output and "dispatcher cannot work" not in dispatcher.output
    assert dispatcher.stop() == 0


def test_health_probes_record_events_and_keep_the_url_out_of_the_database(conn, fake, start_dispatcher):
    secret_url = f"{fake.base_url}/app/health?token=s3cret-token"
    fake.script("app", Fault(200, b"ok"), Fault(503, b"down"))
    start_dispatcher(env={**fake.env(), "PRODUCTION_URL": secret_url})
    wait_until(lambda: conn.execute("SELECT count(*) FROM monitoring_health_checks").fetchone()[0])
    conn.execute("UPDATE monitoring_health_checks SET check_interval = '1 second', next_run_at = now()")
    wait_until(lambda: conn.execute("SELECT count(*) FROM monitoring_events WHERE event_type = 'health_check_failure'").fetchone()[0])
    assert conn.execute("SELECT url FROM monitoring_health_checks").fetchone() == ("env:PRODUCTION_URL",)
    rows = conn.execute("SELECT event_type, labels->>'check' FROM monitoring_events ORDER BY received_at").fetchall()
    assert rows[0] == ("api_response_time", "production") and ("health_check_failure", "production") in rows
    stored = json.dumps(conn.execute("SELECT json_agg(e) FROM monitoring_events e").fetchone()[0])
    stored += json.dumps(conn.execute("SELECT json_agg(c) FROM monitoring_health_checks c").fetchone()[0])
    assert "s3cret-token" not in stored


def test_a_probe_that_cannot_connect_is_an_event_not_a_crash(conn, fake, start_dispatcher):
    dispatcher = start_dispatcher()
    conn.execute("INSERT INTO monitoring_health_checks (name, url, timeout) VALUES ('gone', 'http://127.0.0.1:9/health', '1 second')")
    wait_until(lambda: conn.execute("SELECT count(*) FROM monitoring_events WHERE event_type = 'health_check_failure'").fetchone()[0])
    reason = conn.execute("SELECT labels->>'reason' FROM monitoring_events").fetchone()[0]
    assert reason.startswith("ConnectionError") and dispatcher.process.poll() is None


@pytest.mark.escalation
def test_the_on_call_person_is_mentioned_in_slack(conn, fake, start_dispatcher):
    conn.execute("UPDATE monitoring_people SET slack_member_id = 'U0PRIMARY1' WHERE name IN ('primary_engineer_1', 'primary_engineer_2')")
    start_dispatcher()
    conn.execute(SEED_CRITICAL)
    wait_until(lambda: all_final(conn) and len(fake.requests_for("slack")) == 2)
    texts = [r.json["text"] for r in fake.requests_for("slack")]
    assert any(t.startswith(":rotating_light: <@U0PRIMARY1> you are on call for this alert: Test") for t in texts)
