"""`pgalert serve` as a real process, over real HTTP, against a real PostgreSQL: payloads shaped and signed as
the vendors document (../shared/specs/inbound.md), and every way a request can be wrong."""

from __future__ import annotations

import base64
import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import psycopg
import pytest
import requests

from devtools.fake_providers import PAGERDUTY_API_TOKEN, FakeProviders, sign_pagerduty, sign_slack
from devtools.serve import start_serve
from tests.helpers import child_environment, wait_until

PD_SECRETS = ("pd-secret-old", "pd-secret-new")  # a subscription's secret mid-rotation
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
OPSGENIE_TOKEN = "og-token-7d0c2f"
MAX_BODY = 65536


class ServeProcess:
    def __init__(self, url: str, log: Path, process: subprocess.Popen):
        self.url = url
        self.log = log
        self.process = process

    def post(self, path: str, body: bytes | dict | list, headers: dict | None = None, **kwargs) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(self.url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})},
                             timeout=10, **kwargs)

    @property
    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    providers = FakeProviders().start()
    yield providers
    providers.stop()


@pytest.fixture
def inbound_url(db_url: str) -> Iterator[str]:
    """A login that holds only monitoring_inbound, as the README tells operators to make."""
    login = f"pgalert_serve_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE monitoring_inbound')
    yield db_url.replace("postgresql://postgres@", f"postgresql://{login}@", 1)
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (login,))
        admin.execute(f'DROP ROLE "{login}"')


def start(database_url: str, env: dict[str, str], log: Path) -> ServeProcess:
    process, url = start_serve(database_url, log, "--max-body-bytes", str(MAX_BODY), env=env,
                               base_env=child_environment())
    return ServeProcess(url, log, process)


@pytest.fixture
def serve(inbound_url: str, fake: FakeProviders, tmp_path: Path) -> Iterator[ServeProcess]:
    env = {
        "PAGERDUTY_WEBHOOK_SECRETS": ",".join(PD_SECRETS),
        "PAGERDUTY_API_TOKEN": PAGERDUTY_API_TOKEN,
        "PAGERDUTY_API_URL": f"{fake.base_url}/pagerduty-api",
        "SLACK_SIGNING_SECRET": SLACK_SECRET,
        "SLACK_RESPONSE_URL_PREFIX": f"{fake.base_url}/slack-response/",
        "OPSGENIE_WEBHOOK_TOKEN": OPSGENIE_TOKEN,
    }
    process = start(inbound_url, env, tmp_path / "serve.log")
    yield process
    process.process.send_signal(signal.SIGTERM)
    assert process.process.wait(15) == 0  # a clean shutdown on SIGTERM
    for secret in (*PD_SECRETS, SLACK_SECRET, OPSGENIE_TOKEN, PAGERDUTY_API_TOKEN):
        assert secret not in process.output


def create_client(db_url: str, name: str) -> str:
    done = subprocess.run([sys.executable, "-m", "dispatcher", "api-client", "create", name],
                          env=child_environment(DATABASE_URL=db_url), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def token(db_url: str) -> str:
    return create_client(db_url, "prometheus")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def alert_count(conn) -> int:
    return conn.execute("SELECT count(*) FROM monitoring_alerts").fetchone()[0]


def paged_alert(conn, minutes_ago: int = 10) -> tuple[int, str, dt.datetime]:
    """A critical alert detected a while ago, already paged at PagerDuty, Slack and Sentry."""
    alert_id = conn.execute("SELECT monitoring_raise_alert('payment_failure', 'critical', 'Payments failing', "
                            "p_at => now() - make_interval(mins => %s))", (minutes_ago,)).fetchone()[0]
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', completed_at = now(), attempts = 1 "
                 "WHERE alert_id = %s AND action = 'trigger'", (alert_id,))
    key, created = conn.execute(
        "SELECT 'pgalert-' || left(replace(installation_id::text, '-', ''), 8) || '-' || a.id, a.created_at "
        "FROM _monitoring_installation, monitoring_alerts AS a WHERE a.id = %s", (alert_id,)).fetchone()
    return alert_id, key, created


# ---------------------------------------------------------------------------------------------------------
# The generic API
# ---------------------------------------------------------------------------------------------------------
def test_a_client_raises_deduplicates_and_resolves_with_its_token(serve, token, conn):
    alert = {"alert_type": "ci_failure", "severity": "warning", "title": "main is red", "source": "ci",
             "details": {"runbook_url": "https://runbooks.example/ci"}}
    first = serve.post("/v1/alerts", alert, bearer(token))
    assert (first.status_code, first.json()) == (200, {"results": [{"index": 0, "outcome": "opened", "alert_id": 1}]})
    assert serve.post("/v1/alerts", alert, bearer(token)).json()["results"][0]["outcome"] == "deduplicated"
    resolved = serve.post("/v1/alerts", {"status": "resolved", "alert_type": "ci_failure", "source": "ci"}, bearer(token))
    assert resolved.json()["results"][0]["outcome"] == "resolved"
    row = conn.execute("SELECT status, occurrence_count, resolved_by, resolved_via, details->>'runbook_url' "
                       "FROM monitoring_alerts").fetchone()
    assert row == ("resolved", 2, "prometheus", "api", "https://runbooks.example/ci")
    # routed like an INSERT: a warning goes to Opsgenie, Slack and Sentry
    assert {p for (p,) in conn.execute("SELECT provider FROM monitoring_deliveries WHERE action = 'trigger'")} == \
        {"opsgenie", "slack", "sentry"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer pga_not-a-token"}, {"Authorization": "Basic eDp5"}])
def test_a_request_without_a_valid_token_is_refused_and_writes_nothing(serve, token, conn, headers):
    answer = serve.post("/v1/alerts", {"alert_type": "x", "severity": "info", "title": "t"}, headers)
    assert answer.status_code == 401 and "token" in answer.json()["error"].lower()
    assert alert_count(conn) == 0
    assert "inbound request refused" in serve.output and "pga_not-a-token" not in serve.output


def test_a_revoked_token_stops_working_at_once(serve, token, db_url, conn):
    assert serve.post("/v1/alerts", {"alert_type": "x", "severity": "info", "title": "t"}, bearer(token)).status_code == 200
    done = subprocess.run([sys.executable, "-m", "dispatcher", "api-client", "revoke", "prometheus"],
                          env=child_environment(DATABASE_URL=db_url), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert serve.post("/v1/alerts", {"alert_type": "y", "severity": "info", "title": "t"}, bearer(token)).status_code == 401
    assert conn.execute("SELECT token_sha256 <> sha256(%s::bytea) FROM monitoring_api_clients", (token.encode(),)).fetchone() == (False,)
    assert conn.execute("SELECT count(*) FROM monitoring_api_clients WHERE token_sha256::text LIKE %s", (f"%{token}%",)).fetchone() == (0,)


@pytest.mark.parametrize(("body", "status", "reason"), [
    (b"{not json", 400, "not JSON"),
    (b"[" * 30_000 + b"]" * 30_000, 400, "nested deeper"),
    (b"[]", 400, "1 to 1000"),
    # an alert that cannot be stored is rejected (422 when every alert of the request is)
    (b'{"alert_type": "x", "severity": "loud", "title": "t"}', 422, "severity must be one of"),
    (b'{"alert_type": "x", "severity": "info"}', 422, "title is required"),
    (b'{"alert_type": "x", "severity": "info", "title": "t", "occurred_at": "yesterday"}', 422, "RFC 3339"),
    (b'{"alert_type": "x", "severity": "info", "title": "t", "details": [1]}', 422, "details must be a JSON object"),
    (json.dumps({"alert_type": "x", "severity": "info", "title": "t" * 5000}).encode(), 422, "over the limit"),
])
def test_malformed_alerts_get_a_reason_and_write_nothing(serve, token, conn, body, status, reason):
    answer = serve.post("/v1/alerts", body, bearer(token))
    assert answer.status_code == status and reason in json.dumps(answer.json())
    assert alert_count(conn) == 0


HOSTILE = [  # each gave a 500 with a traceback (#22, 9)
    (b'"title": "a\\u0000b"', "NUL"),
    (b'"labels": {"env": "\\u0000"}', "NUL"),
    (b'"labels": {"a\\u0000": "1"}', "NUL"),
    (b'"title": "\\udc00"', "lone surrogate"),
    (b'"details": {"x": 1e999}', "cannot store"),
    (b'"details": {"x": NaN}', "cannot store"),
    (b'"details": {"x": ' + b"9" * 5000 + b"}", "cannot store"),
    (b'"details": ' + b'{"a": ' * 40 + b"1" + b"}" * 40, "nested deeper"),
]


def test_a_hostile_alert_is_rejected_alone_and_the_rest_of_its_batch_counts(serve, token, conn):
    good = b'{"alert_type": "ok", "severity": "info", "title": "fine", "dedup_key": "ok-%d"}'
    for number, (field, reason) in enumerate(HOSTILE):
        # a second "title" key overrides the first, as JSON parsers do
        hostile = b'{"alert_type": "x", "severity": "info", "title": "t", "dedup_key": "bad", ' + field + b"}"
        body = b"[" + good % (2 * number) + b", " + hostile + b", " + good % (2 * number + 1) + b"]"
        answer = serve.post("/v1/alerts", body, bearer(token))
        assert answer.status_code == 200, (field, answer.text)
        results = answer.json()["results"]
        assert [r["outcome"] for r in results] == ["opened", "rejected", "opened"], field
        assert reason in results[1]["error"] and "alert 1" in results[1]["error"], field
    assert alert_count(conn) == 2 * len(HOSTILE)
    assert conn.execute("SELECT count(*) FROM monitoring_alerts WHERE dedup_key = 'bad'").fetchone() == (0,)
    assert "Traceback" not in serve.output and "Exception in ASGI" not in serve.output


def test_one_hostile_alert_of_an_alertmanager_group_leaves_the_others_stored(serve, token, conn):
    bad_label = json.dumps(am_payload(am_alert("g1"), am_alert("g2", instance="a\x00b"), am_alert("g3"))).encode()
    answer = serve.post("/v1/alertmanager", bad_label, bearer(token))
    assert [r["outcome"] for r in answer.json()["results"]] == ["opened", "rejected", "opened"]
    assert "NUL" in answer.json()["results"][1]["error"]
    unknown_status = am_payload(am_alert("g4"), dict(am_alert("g5"), status="pending"))
    assert [r["outcome"] for r in serve.post("/v1/alertmanager", unknown_status, bearer(token)).json()["results"]] == \
        ["opened", "rejected"]
    assert {k for (k,) in conn.execute("SELECT dedup_key FROM monitoring_alerts")} == \
        {"alertmanager:g1", "alertmanager:g3", "alertmanager:g4"}


@pytest.mark.parametrize("path", ["/v1/alerts", "/v1/alertmanager"])
@pytest.mark.parametrize("body", [b"{not json", b"[" * 30_000 + b"]" * 30_000, b'{"title": "\\u0000"}'])
def test_a_wrong_token_is_refused_before_the_body_is_read(serve, token, conn, path, body):
    for headers in ({}, {"Authorization": "Bearer pga_wrong"}):
        answer = serve.post(path, body, headers)
        assert answer.status_code == 401 and "token" in answer.json()["error"], answer.text
    assert "Traceback" not in serve.output


def test_a_body_that_never_finishes_is_timed_out_and_a_client_that_leaves_is_not_an_error(inbound_url, token,
                                                                                       tmp_path, conn):
    process, url = start_serve(inbound_url, tmp_path / "slow.log", "--body-timeout", "0.5",
                               base_env=child_environment())
    host, port = url.removeprefix("http://").split(":")
    head = (f"POST /v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"alert_type\"").encode()
    try:
        with socket.create_connection((host, int(port)), timeout=30) as stalled:
            stalled.sendall(head)  # and then nothing: the answer comes when the server gives up
            answer = b""
            while chunk := stalled.recv(4096):  # and the server closes the connection: it holds nothing more
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408 ")
        with socket.create_connection((host, int(port)), timeout=30) as leaving:
            leaving.sendall(head)
        log = tmp_path / "slow.log"
        wait_until(lambda: "abandoned by the client" in log.read_text(), timeout=30)
        assert "Traceback" not in log.read_text() and "Exception in ASGI" not in log.read_text()
        assert alert_count(conn) == 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


def test_an_oversized_body_is_refused_before_it_is_read(serve, token, conn):
    big = json.dumps({"alert_type": "x", "severity": "info", "title": "t", "details": {"blob": "x" * MAX_BODY}}).encode()
    assert serve.post("/v1/alerts", big, bearer(token)).status_code == 413
    # and without a Content-Length: streamed in chunks, cut off at the limit
    chunked = requests.post(serve.url + "/v1/alerts", data=iter([big[:40000], big[40000:]]),
                            headers={**bearer(token), "Content-Type": "application/json"}, timeout=10)
    assert chunked.status_code == 413 and alert_count(conn) == 0


def test_the_openapi_description_lists_every_endpoint(serve):
    document = requests.get(serve.url + "/openapi.json", timeout=5).json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {"/v1/alerts", "/v1/alertmanager", "/v1/pagerduty", "/v1/opsgenie",
                                      "/v1/slack/actions", "/healthz", "/metrics"}
    assert document["components"]["schemas"]["Alert"]["required"] == ["alert_type"]


# ---------------------------------------------------------------------------------------------------------
# Alertmanager (and Grafana)
# ---------------------------------------------------------------------------------------------------------
def am_payload(*alerts: dict, status: str = "firing") -> dict:
    return {"version": "4", "groupKey": '{}:{alertname="HighLatency"}', "truncatedAlerts": 0, "status": status,
            "receiver": "pgalert", "groupLabels": {"alertname": "HighLatency"}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": list(alerts)}


# Alertmanager's times are the tests' clock, never a calendar date: a firing alert an hour old
STARTS_AT = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0)


def rfc3339(at: dt.datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def am_alert(fingerprint: str, status: str = "firing", severity: str | None = "critical",
             starts_at: dt.datetime = STARTS_AT, **labels: str) -> dict:
    return {
        "status": status,
        "labels": {"alertname": "HighLatency", "instance": "api-1:9100", "env": "prod",
                   **({"severity": severity} if severity else {}), **labels},
        "annotations": {"summary": "p99 latency over 2s", "description": "api-1 answers slowly",
                        "runbook_url": "https://runbooks.example/latency"},
        "startsAt": rfc3339(starts_at),
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else rfc3339(starts_at + dt.timedelta(minutes=20)),
        "generatorURL": "http://prometheus:9090/graph?g0.expr=latency",
        "fingerprint": fingerprint,
    }


def test_alertmanager_groups_raise_resolve_and_repeat_idempotently(serve, token, conn):
    group = am_payload(am_alert("a1"), am_alert("b2", severity=None, instance="api-2:9100"), am_alert("c3", severity="page"))
    answer = serve.post("/v1/alertmanager", group, bearer(token))
    assert [r["outcome"] for r in answer.json()["results"]] == ["opened", "opened", "opened"]
    rows = conn.execute("SELECT dedup_key, severity, title, message, source, details->'labels'->>'env', "
                        "details->>'runbook_url', occurred_at FROM monitoring_alerts ORDER BY id").fetchall()
    assert rows[0] == ("alertmanager:a1", "critical", "p99 latency over 2s", "api-1 answers slowly", "api-1:9100", "prod",
                       "https://runbooks.example/latency", STARTS_AT)
    assert [r[1] for r in rows] == ["critical", "warning", "critical"]  # no label: the default; page: critical
    # Alertmanager's repeat_interval re-sends the same group: nothing changes, not even the counts
    assert [r["outcome"] for r in serve.post("/v1/alertmanager", group, bearer(token)).json()["results"]] == ["repeat"] * 3
    assert conn.execute("SELECT sum(occurrence_count) FROM monitoring_alerts").fetchone() == (3,)
    # a group that mixes a resolved alert with firing ones
    mixed = am_payload(am_alert("a1", status="resolved"), am_alert("b2", severity=None, instance="api-2:9100"))
    assert [r["outcome"] for r in serve.post("/v1/alertmanager", mixed, bearer(token)).json()["results"]] == ["resolved", "repeat"]
    assert conn.execute("SELECT status, resolved_via FROM monitoring_alerts WHERE dedup_key = 'alertmanager:a1'").fetchone() == \
        ("resolved", "alertmanager")
    # Alertmanager retries the same resolve: still one resolve
    assert serve.post("/v1/alertmanager", mixed, bearer(token)).json()["results"][0]["outcome"] == "already_resolved"
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE action = 'resolve'").fetchone() == (2,)  # pagerduty, slack


def test_an_alert_firing_for_longer_than_the_horizon_opens_and_pages(serve, token, conn):
    """Alertmanager re-sends a firing alert with its original startsAt: a problem of weeks is still news (#36, 6)."""
    month_ago = STARTS_AT - dt.timedelta(days=30)
    answer = serve.post("/v1/alertmanager", am_payload(am_alert("old", starts_at=month_ago),
                                                       am_alert("older", starts_at=month_ago - dt.timedelta(days=900))),
                        bearer(token))
    assert [r["outcome"] for r in answer.json()["results"]] == ["opened", "opened"]
    rows = conn.execute("SELECT created_at - occurred_at, reported_occurred_at FROM monitoring_alerts ORDER BY id").fetchall()
    assert rows == [(dt.timedelta(days=7), month_ago), (dt.timedelta(days=7), month_ago - dt.timedelta(days=900))]
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE action = 'trigger'").fetchone()[0] >= 2
    # its repeats are repeats, as for any other firing alert
    again = serve.post("/v1/alertmanager", am_payload(am_alert("old", starts_at=month_ago)), bearer(token))
    assert again.json()["results"][0]["outcome"] == "repeat"


def test_a_grafana_webhook_is_understood_as_alertmanager(serve, token, conn):
    grafana = am_payload(dict(am_alert("g1"), values={"B": 2.3}, dashboardURL="http://grafana/d/x",
                              silenceURL="http://grafana/alerting/silence/new"))
    grafana.update(title="[FIRING:1] HighLatency", state="alerting", message="p99 latency over 2s")
    assert serve.post("/v1/alertmanager", grafana, bearer(token)).json()["results"][0]["outcome"] == "opened"
    links = conn.execute("SELECT details->'links' FROM monitoring_alerts").fetchone()[0]
    assert {"href": "http://grafana/d/x", "text": "Dashboard"} in links


def test_a_payload_of_another_version_is_refused(serve, token, conn):
    answer = serve.post("/v1/alertmanager", dict(am_payload(am_alert("a")), version="3"), bearer(token))
    assert answer.status_code == 400 and "version" in answer.json()["error"] and alert_count(conn) == 0


# ---------------------------------------------------------------------------------------------------------
# PagerDuty webhooks v3
# ---------------------------------------------------------------------------------------------------------
def pd_event(event_type: str, incident_id: str, at: dt.datetime, incident_key: str | None = None,
             agent: str = "Alice Responder") -> dict:
    data = {"id": incident_id, "type": "incident", "number": 7, "status": event_type.split(".")[1],
            "title": "Payments failing", "html_url": f"https://acme.pagerduty.com/incidents/{incident_id}",
            "service": {"id": "PSVC1", "type": "service_reference"}, "urgency": "high"}
    if incident_key:
        data["incident_key"] = incident_key
    return {"event": {"id": "01" + uuid.uuid4().hex[:24].upper(), "event_type": event_type, "resource_type": "incident",
                      "occurred_at": at.isoformat().replace("+00:00", "Z"),
                      "agent": {"id": "PUSER1", "type": "user_reference", "summary": agent},
                      "client": None, "data": data}}


def post_pd(serve, event: dict, secret: str = PD_SECRETS[1], webhook_id: str | None = None, signature: str | None = None):
    body = json.dumps(event).encode()
    headers = {"X-PagerDuty-Signature": signature or sign_pagerduty(body, secret),
               "X-Webhook-Id": webhook_id or uuid.uuid4().hex, "User-Agent": "PagerDuty-Webhook/V3.0"}
    return serve.post("/v1/pagerduty", body, headers)


def test_a_signed_pagerduty_acknowledge_is_recorded_once_with_the_responders_time(serve, conn):
    alert_id, key, created = paged_alert(conn)
    at = created + dt.timedelta(minutes=2)
    event = pd_event("incident.acknowledged", "PINC001", at, incident_key=key)
    first = post_pd(serve, event, webhook_id="wh-1")
    assert first.status_code == 200 and first.json() == {"outcome": "acknowledged", "alert_id": alert_id, "status": "acknowledged"}
    assert post_pd(serve, event, webhook_id="wh-1").json()["outcome"] == "duplicate"  # PagerDuty's retry
    assert conn.execute("SELECT acknowledged_at, acknowledged_by, acknowledged_via FROM monitoring_alerts").fetchone() == \
        (at, "Alice Responder", "pagerduty")
    # no echo: Slack is told, PagerDuty is not
    assert conn.execute("SELECT provider FROM monitoring_deliveries WHERE action = 'acknowledge'").fetchall() == [("slack",)]


def test_a_captured_pagerduty_webhook_replayed_under_a_new_id_acts_once(serve, conn):
    """The receipt is the signed event id: X-Webhook-Id is not signed, so anyone holding one signed webhook
    could otherwise replay it as often as they liked (#22, 13)."""
    alert_id, key, created = paged_alert(conn)
    ack = pd_event("incident.acknowledged", "PINC010", created + dt.timedelta(minutes=1), incident_key=key)
    assert post_pd(serve, ack, webhook_id="wh-a").json()["outcome"] == "acknowledged"
    post_pd(serve, pd_event("incident.unacknowledged", "PINC010", created + dt.timedelta(minutes=2), incident_key=key))
    assert post_pd(serve, ack, webhook_id="wh-b").json()["outcome"] == "duplicate"
    assert conn.execute("SELECT status FROM monitoring_alerts").fetchone() == ("open",)


def test_a_resolve_dated_before_the_alert_counts_from_when_pgalert_heard_it(serve, conn):
    alert_id, key, created = paged_alert(conn)
    old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert post_pd(serve, pd_event("incident.resolved", "PINC011", old, incident_key=key)).json()["outcome"] == "resolved"
    resolved_at, recorded = conn.execute(
        "SELECT a.resolved_at, ia.occurred_at FROM monitoring_alerts AS a, monitoring_inbound_actions AS ia").fetchone()
    assert resolved_at > created + dt.timedelta(minutes=9) and recorded == old  # MTTR is not 0; the claim is kept


def test_a_second_reopen_at_the_same_provider_time_is_not_an_error(serve, conn):
    alert_id, key, created = paged_alert(conn)
    at = created + dt.timedelta(minutes=1)
    for _ in range(2):
        post_pd(serve, pd_event("incident.resolved", "PINC012", at, incident_key=key))
        answer = post_pd(serve, pd_event("incident.reopened", "PINC012", at, incident_key=key))
        assert (answer.status_code, answer.json()["outcome"]) == (200, "reopened"), answer.text


@pytest.mark.parametrize("signature", [
    None,  # missing
    "v1=" + "0" * 64,
    "v0=abc",
])
def test_a_pagerduty_webhook_that_is_not_signed_by_a_configured_secret_is_refused(serve, conn, signature):
    alert_id, key, created = paged_alert(conn)
    body = json.dumps(pd_event("incident.resolved", "PINC002", created, incident_key=key)).encode()
    headers = {"X-Webhook-Id": "x"} | ({"X-PagerDuty-Signature": signature} if signature else {})
    assert serve.post("/v1/pagerduty", body, headers).status_code == 401
    signed_by_stranger = post_pd(serve, json.loads(body), secret="someone-elses-secret")
    assert signed_by_stranger.status_code == 401
    assert conn.execute("SELECT status FROM monitoring_alerts").fetchone() == ("open",)
    assert conn.execute("SELECT count(*) FROM monitoring_inbound_actions").fetchone() == (0,)


def test_any_secret_of_a_rotation_and_any_of_several_signatures_is_accepted(serve, conn):
    alert_id, key, created = paged_alert(conn)
    event = pd_event("incident.acknowledged", "PINC003", created, incident_key=key)
    body = json.dumps(event).encode()
    several = "v1=" + "f" * 64 + "," + sign_pagerduty(body, PD_SECRETS[0])  # old secret, second of two values
    assert post_pd(serve, event, signature=several).json()["outcome"] == "acknowledged"


def test_an_incident_without_its_key_is_mapped_through_the_rest_api_once(serve, conn, fake):
    alert_id, key, created = paged_alert(conn)
    fake.incidents["PINC004"] = key  # PagerDuty opened it from pgalert's trigger
    assert post_pd(serve, pd_event("incident.acknowledged", "PINC004", created)).json()["outcome"] == "acknowledged"
    assert post_pd(serve, pd_event("incident.resolved", "PINC004", created + dt.timedelta(minutes=5))).json()["outcome"] == "resolved"
    lookups = fake.requests_for("pagerduty-api")
    assert [(r.method, r.path, r.status) for r in lookups] == [("GET", "/incidents/PINC004", 200)]  # remembered after one


def test_an_unknown_incident_is_answered_200_and_recorded(serve, conn):
    paged_alert(conn)
    answer = post_pd(serve, pd_event("incident.acknowledged", "PUNKNOWN", dt.datetime.now(dt.UTC)))
    assert answer.status_code == 200 and answer.json()["outcome"] == "unknown_alert"  # a 4xx would disable the subscription
    assert conn.execute("SELECT outcome, alert_id FROM monitoring_inbound_actions").fetchone() == ("unknown_alert", None)
    assert conn.execute("SELECT status FROM monitoring_alerts").fetchone() == ("open",)


def test_events_pgalert_has_no_use_for_are_acknowledged_and_ignored(serve, conn):
    alert_id, key, created = paged_alert(conn)
    answer = post_pd(serve, pd_event("incident.annotated", "PINC005", created, incident_key=key))
    assert answer.json() == {"outcome": "ignored", "event": "incident.annotated"}
    assert conn.execute("SELECT status FROM monitoring_alerts").fetchone() == ("open",)


def test_unacknowledged_and_reopened_bring_the_alert_back(serve, conn):
    alert_id, key, created = paged_alert(conn)
    at = created + dt.timedelta(minutes=1)
    post_pd(serve, pd_event("incident.acknowledged", "PINC006", at, incident_key=key))
    assert post_pd(serve, pd_event("incident.unacknowledged", "PINC006", at + dt.timedelta(minutes=1), incident_key=key)).json() == \
        {"outcome": "reopened", "alert_id": alert_id, "status": "open"}
    post_pd(serve, pd_event("incident.resolved", "PINC006", at + dt.timedelta(minutes=2), incident_key=key))
    assert post_pd(serve, pd_event("incident.reopened", "PINC006", at + dt.timedelta(minutes=3), incident_key=key)).json()["status"] == "open"


def test_the_pagerduty_endpoint_is_absent_without_a_secret(inbound_url, tmp_path, conn):
    process = start(inbound_url, {}, tmp_path / "bare.log")
    try:
        answer = process.post("/v1/pagerduty", b"{}", {"X-PagerDuty-Signature": "v1=00"})
        assert answer.status_code == 404 and "not configured" in answer.json()["error"]
    finally:
        process.process.send_signal(signal.SIGTERM)
        process.process.wait(15)


# ---------------------------------------------------------------------------------------------------------
# Opsgenie
# ---------------------------------------------------------------------------------------------------------
def og_event(action: str, alias: str, user: str = "bob@example.com") -> dict:
    now_ms = int(time.time() * 1000)
    return {"action": action, "alert": {"alertId": "70413a06-38d6-4c85-92b8-5ebc900d42e2", "message": "Payments failing",
                                        "tags": [], "tinyId": "1791", "entity": "", "alias": alias,
                                        "createdAt": now_ms - 60000, "updatedAt": now_ms * 1_000_000,
                                        "username": user, "userId": "daed1180-0ce8-438b-8f8e-57e1a5920a2d"},
            "source": {"name": "", "type": "mobile"}, "integrationName": "pgalert", "integrationType": "Webhook"}


@pytest.mark.parametrize("auth", ["bearer", "basic", "query"])
def test_an_opsgenie_acknowledge_by_alias_with_the_token_however_it_is_sent(serve, conn, auth):
    # Opsgenie acts only on what it was sent (#22, 7): the critical route goes there before the alert is raised
    conn.execute("UPDATE monitoring_routes SET provider = 'opsgenie' WHERE provider = 'pagerduty'")
    alert_id, key, _ = paged_alert(conn)
    headers = {"bearer": {"Authorization": f"Bearer {OPSGENIE_TOKEN}"},
               "basic": {"Authorization": "Basic " + base64.b64encode(f"opsgenie:{OPSGENIE_TOKEN}".encode()).decode()},
               "query": {}}[auth]
    path = "/v1/opsgenie" + (f"?token={OPSGENIE_TOKEN}" if auth == "query" else "")
    answer = serve.post(path, og_event("Acknowledge", key), headers)
    assert answer.json()["outcome"] == "acknowledged"
    assert conn.execute("SELECT acknowledged_by, acknowledged_via FROM monitoring_alerts").fetchone() == ("bob@example.com", "opsgenie")


def test_an_opsgenie_webhook_with_a_wrong_token_is_refused(serve, conn):
    conn.execute("UPDATE monitoring_routes SET provider = 'opsgenie' WHERE provider = 'pagerduty'")
    alert_id, key, _ = paged_alert(conn)
    assert serve.post("/v1/opsgenie?token=nope", og_event("Close", key)).status_code == 401
    assert serve.post("/v1/opsgenie", og_event("Close", key)).status_code == 401
    assert conn.execute("SELECT status FROM monitoring_alerts").fetchone() == ("open",)
    assert serve.post(f"/v1/opsgenie?token={OPSGENIE_TOKEN}", og_event("Close", key)).json()["outcome"] == "resolved"
    assert serve.post(f"/v1/opsgenie?token={OPSGENIE_TOKEN}", og_event("AddNote", key)).json()["outcome"] == "ignored"


# ---------------------------------------------------------------------------------------------------------
# Slack buttons
# ---------------------------------------------------------------------------------------------------------
def slack_click(key: str, action_id: str, member: str, fake: FakeProviders, action_ts: str | None = None) -> bytes:
    payload = {
        "type": "block_actions", "user": {"id": member, "username": "ana.s", "team_id": "T0000000"},
        "api_app_id": "A0000000", "container": {"type": "message", "message_ts": "1700000000.000100"},
        "channel": {"id": "C0000000", "name": "alerts"},
        "message": {"type": "message", "text": "P0 Payments failing", "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "P0 Payments failing"}},
            {"type": "actions", "block_id": "pgalert_lifecycle", "elements": [
                {"type": "button", "action_id": "pgalert_acknowledge", "value": key, "text": {"type": "plain_text", "text": "Acknowledge"}},
                {"type": "button", "action_id": "pgalert_resolve", "value": key, "text": {"type": "plain_text", "text": "Resolve"}}]}]},
        "response_url": f"{fake.base_url}/slack-response/actions/T0000000/1234/abcd",
        "actions": [{"action_id": action_id, "block_id": "pgalert_lifecycle", "value": key, "type": "button",
                     "action_ts": action_ts or f"{time.time():.6f}"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def post_slack(serve, body: bytes, timestamp: int | None = None, secret: str = SLACK_SECRET):
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               **sign_slack(body, secret, timestamp if timestamp is not None else int(time.time()))}
    return requests.post(serve.url + "/v1/slack/actions", data=body, headers=headers, timeout=10)


def test_a_slack_click_acknowledges_as_the_person_and_updates_the_message(serve, conn, fake):
    alert_id, key, _ = paged_alert(conn)
    conn.execute("UPDATE monitoring_people SET slack_member_id = 'U0ANA' WHERE name = 'primary_engineer_1'")
    answer = post_slack(serve, slack_click(key, "pgalert_acknowledge", "U0ANA", fake))
    assert answer.status_code == 200
    assert conn.execute("SELECT acknowledged_by, acknowledged_via FROM monitoring_alerts").fetchone() == ("primary_engineer_1", "slack")
    update = fake.wait_for(lambda got: any(r.provider == "slack-response" for r in got))[-1].json
    assert update["replace_original"] is True
    buttons = [e["action_id"] for b in update["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["pgalert_resolve"]  # acknowledged: only Resolve is left
    assert update["blocks"][-1]["elements"][0]["text"] == ":eyes: Acknowledged by <@U0ANA>"
    # no echo to Slack's own webhook; PagerDuty hears of it
    assert conn.execute("SELECT provider FROM monitoring_deliveries WHERE action = 'acknowledge'").fetchall() == [("pagerduty",)]


def test_an_unknown_slack_user_is_recorded_by_id(serve, conn, fake):
    alert_id, key, _ = paged_alert(conn)
    assert post_slack(serve, slack_click(key, "pgalert_resolve", "U0STRANGER", fake)).status_code == 200
    assert conn.execute("SELECT resolved_by FROM monitoring_alerts").fetchone() == ("ana.s (slack U0STRANGER)",)
    assert conn.execute("SELECT actor, outcome FROM monitoring_inbound_actions").fetchone() == ("ana.s (slack U0STRANGER)", "resolved")


@pytest.mark.parametrize("problem", ["stale", "future", "bad signature", "unsigned"])
def test_a_slack_request_that_is_old_or_not_signed_is_refused(serve, conn, fake, problem):
    alert_id, key, _ = paged_alert(conn)
    body = slack_click(key, "pgalert_acknowledge", "U0ANA", fake)
    if problem == "stale":
        answer = post_slack(serve, body, timestamp=int(time.time()) - 301)
    elif problem == "future":
        answer = post_slack(serve, body, timestamp=int(time.time()) + 600)
    elif problem == "bad signature":
        answer = post_slack(serve, body, secret="not-the-signing-secret")
    else:
        answer = requests.post(serve.url + "/v1/slack/actions", data=body, timeout=10)
    assert answer.status_code == 401
    assert conn.execute("SELECT status FROM monitoring_alerts").fetchone() == ("open",)


def test_a_response_url_outside_slack_is_not_followed(serve, conn, fake):
    alert_id, key, _ = paged_alert(conn)
    body = slack_click(key, "pgalert_acknowledge", "U0ANA", fake).replace(b"slack-response", b"elsewhere")
    assert post_slack(serve, body).status_code == 200
    assert conn.execute("SELECT status FROM monitoring_alerts").fetchone() == ("acknowledged",)
    wait_until(lambda: "slack response_url not followed" in serve.output)
    assert fake.requests_for("elsewhere") == []


# ---------------------------------------------------------------------------------------------------------
# Probes and shutdown
# ---------------------------------------------------------------------------------------------------------
def test_metrics_count_requests_and_outcomes(serve, token):
    serve.post("/v1/alerts", {"alert_type": "x", "severity": "info", "title": "t"}, bearer(token))
    serve.post("/v1/alerts", {"alert_type": "x", "severity": "info", "title": "t"}, {})
    text = requests.get(serve.url + "/metrics", timeout=5).text
    assert 'pgalert_inbound_requests_total{endpoint="api",status="200"} 1.0' in text
    assert 'pgalert_inbound_requests_total{endpoint="api",status="401"} 1.0' in text
    assert 'pgalert_inbound_outcomes_total{outcome="opened",via="api"} 1.0' in text


def test_json_logs_say_what_happened_without_secrets(inbound_url, tmp_path, db_url):
    token = create_client(db_url, "ci")
    process = start(inbound_url, {"PGALERT_LOG_FORMAT": "json"}, tmp_path / "json.log")
    try:
        process.post("/v1/alerts", {"alert_type": "x", "severity": "info", "title": "t"}, bearer(token))
    finally:
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(15) == 0
    events = [json.loads(line) for line in process.output.splitlines() if line.startswith("{")]
    assert any(e["event"] == "alerts received" and e["client"] == "ci" and e["alerts"] == 1 for e in events)
    assert token not in process.output


# ---------------------------------------------------------------------------------------------------------
# End to end: paged by the dispatcher, acknowledged in PagerDuty, heard by serve
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.escalation
def test_a_pagerduty_acknowledge_stops_the_escalation_tells_slack_and_sets_mtta(serve, conn, fake, start_dispatcher):
    conn.execute("UPDATE monitoring_people SET slack_member_id = 'U0PRIMARY' WHERE name = 'primary_engineer_1'")
    alert_id = conn.execute("SELECT monitoring_raise_alert('payment_failure', 'critical', 'Payments failing', "
                            "p_at => now() - interval '10 minutes')").fetchone()[0]
    created, key = conn.execute(
        "SELECT a.created_at, 'pgalert-' || left(replace(i.installation_id::text, '-', ''), 8) || '-' || a.id "
        "FROM monitoring_alerts AS a, _monitoring_installation AS i WHERE a.id = %s", (alert_id,)).fetchone()
    dispatcher = start_dispatcher()
    # PagerDuty opened an incident from the dispatcher's trigger; its webhook names the incident, not our key
    incident = wait_until(lambda: fake.incident_id(key))
    acknowledged_at = created + dt.timedelta(minutes=2)
    answer = post_pd(serve, pd_event("incident.acknowledged", incident, acknowledged_at, agent="Alice Responder"))
    assert answer.json()["outcome"] == "acknowledged"
    # Slack hears who acknowledged it and where; PagerDuty is not sent its own acknowledge back
    follow_up = fake.wait_for(lambda got: any(r.provider == "slack" and "Acknowledged" in r.json["text"] for r in got))
    assert any("Acknowledged* by Alice Responder in PagerDuty" in r.json["text"] for r in follow_up if r.provider == "slack")
    wait_until(lambda: conn.execute("SELECT bool_and(completed_at IS NOT NULL) FROM monitoring_deliveries").fetchone()[0])
    # (a trigger's send retried after a slow reply under load is the same event: PagerDuty deduplicates it)
    assert {r.json["event_action"] for r in fake.requests_for("pagerduty")} == {"trigger"}
    assert conn.execute("SELECT alert_type, status, message FROM monitoring_alerts ORDER BY id").fetchall()[1:] == []
    # pgalert's own escalation stops at the primary: nobody else is paged, however long we wait
    conn.execute("SELECT monitoring_run_oncall(now() + interval '2 hours')")
    assert conn.execute("SELECT finish_reason, level_reached FROM monitoring_alert_escalations WHERE alert_id = %s",
                        (alert_id,)).fetchone() == ("acknowledged", 1)
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE action = 'notify' AND provider = 'slack'").fetchone() == (1,)
    # MTTA is the responder's two minutes, not when the webhook arrived
    mtta = conn.execute("SELECT samples, p50 FROM monitoring_get_sla_summary(24) WHERE metric = 'mtta'").fetchone()
    assert mtta == (1, 120)
    assert dispatcher.stop() == 0


def test_an_opsgenie_webhook_cannot_close_a_critical_that_went_only_to_pagerduty(serve, conn):
    """#22, 7: Opsgenie's token sits in a URL; whoever has it acts only on alerts Opsgenie was sent."""
    alert_id, key, _ = paged_alert(conn)  # PagerDuty, Slack and Sentry: never Opsgenie
    answer = serve.post(f"/v1/opsgenie?token={OPSGENIE_TOKEN}", og_event("Close", key))
    assert answer.status_code == 200 and answer.json()["outcome"] == "not_sent_there"
    assert conn.execute("SELECT status FROM monitoring_alerts WHERE id = %s", (alert_id,)).fetchone() == ("open",)
