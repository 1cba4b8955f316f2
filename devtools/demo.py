"""`make demo`: a project-owned PostgreSQL with pg_cron, migrated, a dispatcher and `pgalert serve` running, and
the seed's alerts routed, acknowledged and resolved in front of you: with SQL, and by responders acting in
PagerDuty and in Slack, whose signed webhooks come back. Then it keeps running until Ctrl-C so you can INSERT
your own.

With no provider configured in the environment, every provider is a local receiver that prints what the real
one would have received, and the demo plays PagerDuty's and Slack's side of the way back. With real keys in the
environment (PAGERDUTY_INTEGRATION_KEY, SLACK_WEBHOOK_URL, ...) it sends for real and acts with SQL only.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import urlencode

import psycopg
import requests

from devtools.fake_providers import PAGERDUTY_API_TOKEN, FakeProviders, describe, sign_pagerduty, sign_slack
from devtools.localpg import LocalServer
from devtools.serve import role_login, start_serve
from dispatcher.console.auth import hash_password
from dispatcher.migrate import MigrationError, migrate
from dispatcher.providers import PROVIDER_ENV

SEED = [
    ("payment_failure", "critical", "Test", "Test PagerDuty"),
    ("api_response_degradation", "warning", "Test", "Test Opsgenie"),
    ("deploy_finished", "info", "Test", "Test Slack"),
]


_PRINT = threading.Lock()
DEMO_PAGERDUTY_WEBHOOK_SECRET = "demo-pagerduty-webhook-secret"
DEMO_SLACK_SIGNING_SECRET = "demo-slack-signing-secret"
# the console's demo login: an admin, on this machine only (the demo's serve listens on 127.0.0.1)
DEMO_CONSOLE_LOGIN, DEMO_CONSOLE_PASSWORD = "demo", "pgalert-demo-only"
# left open at the end, for the console to show
LEFT_OPEN = [("disk_full", "warning", "Disk 95% on db-1", "db-1", '{"labels": {"env": "prod", "host": "db-1"}, '
              '"runbook_url": "https://runbooks.example.com/disk-full"}'),
             ("queue_lag", "info", "Email queue 4 minutes behind", "mailer", '{"labels": {"env": "prod"}}')]


def say(text: str = "") -> None:
    with _PRINT:  # receivers print from their own threads
        print(text, flush=True)


def wait_for_deliveries(conn: psycopg.Connection, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # in flight, or due soon; a retry or a paced send minutes away is not waited for (a claimed delivery's
        # next_attempt_at is its lease expiry, so it is counted by status alone)
        left = conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE status = 'sending' "
                            "OR (status = 'pending' AND next_attempt_at < now() + interval '5 seconds')").fetchone()[0]
        if not left:
            return
        time.sleep(0.1)


def show_deliveries(conn: psycopg.Connection, alert_ids: list[int]) -> None:
    rows = conn.execute(
        "SELECT alert_id, provider, action, status, coalesce(last_http_status::text, ''), coalesce(last_error, '') "
        "FROM monitoring_deliveries WHERE alert_id = ANY(%s) ORDER BY id", (alert_ids,)).fetchall()
    say(f"  {'alert':>5}  {'provider':<10}{'action':<12}{'status':<10}{'http':<5}error")
    for alert_id, provider, action, status, http, error in rows:
        say(f"  {alert_id:>5}  {provider:<10}{action:<12}{status:<10}{http:<5}{error[:60]}")


def serve_env(receiver: FakeProviders) -> dict[str, str]:
    """The secrets the demo's PagerDuty and Slack sign with, and the fake REST API and response_url."""
    return {"PAGERDUTY_WEBHOOK_SECRETS": DEMO_PAGERDUTY_WEBHOOK_SECRET,
            "SLACK_SIGNING_SECRET": DEMO_SLACK_SIGNING_SECRET,
            "PAGERDUTY_API_TOKEN": PAGERDUTY_API_TOKEN, "PAGERDUTY_API_URL": f"{receiver.base_url}/pagerduty-api",
            "SLACK_RESPONSE_URL_PREFIX": f"{receiver.base_url}/slack-response/"}


def pagerduty_acknowledges(serve_url: str, receiver: FakeProviders, dedup_key: str, who: str) -> dict:
    """What PagerDuty sends when a responder taps Acknowledge in its app: a signed v3 webhook naming the incident
    (not pgalert's dedup key, which pgalert then looks up once through the REST API)."""
    incident = receiver.incident_id(dedup_key)
    body = json.dumps({"event": {
        "id": "01DEMO" + incident, "event_type": "incident.acknowledged", "resource_type": "incident",
        "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "agent": {"id": "PDEMO", "type": "user_reference", "summary": who},
        "data": {"id": incident, "type": "incident", "status": "acknowledged", "title": "Test"}}}).encode()
    headers = {"Content-Type": "application/json", "X-Webhook-Id": "demo-" + incident,
               "X-PagerDuty-Signature": sign_pagerduty(body, DEMO_PAGERDUTY_WEBHOOK_SECRET)}
    return requests.post(serve_url + "/v1/pagerduty", data=body, headers=headers, timeout=10).json()


def slack_button_clicked(serve_url: str, receiver: FakeProviders, provider_key: str, member: str, name: str) -> int:
    """What Slack sends when someone clicks pgalert's Resolve button: a signed form with the click."""
    payload = {"type": "block_actions", "user": {"id": member, "username": name},
               "response_url": f"{receiver.base_url}/slack-response/actions/T0/1/demo",
               "message": {"text": "alert", "blocks": []},
               "actions": [{"action_id": "pgalert_resolve", "value": provider_key, "action_ts": f"{time.time():.6f}"}]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               **sign_slack(body, DEMO_SLACK_SIGNING_SECRET, int(time.time()))}
    return requests.post(serve_url + "/v1/slack/actions", data=body, headers=headers, timeout=10).status_code


def main() -> int:
    # `kill -USR1` prints where every thread is, should the demo ever hang (the demo's test does it then)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Ctrl-C stops the demo even where it was started with SIGINT ignored, as a non-interactive shell does
    # for what it runs in the background (Python then installs no handler of its own)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # the name and port are for the test that runs the demo beside a user's own
    server = LocalServer(os.environ.get("PGALERT_DEMO_NAME", "demo"), int(os.environ.get("PGALERT_DEMO_PORT", "55432")))
    say(f"Starting PostgreSQL 15 with pg_cron (data in {server.data_dir}) ...")
    server.start()
    url = server.url()
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            migrate(conn, log=lambda line: say(f"  {line}"))
        except MigrationError as error:
            say(f"\n{error}\nThe demo database predates these migrations; start it afresh with\n"
                f"  {sys.executable} -m devtools.localpg destroy --name {server.name} --port {server.port}")
            return 1
        jobs = conn.execute("SELECT jobname, schedule FROM cron.job ORDER BY jobname").fetchall()
    say(f"Database ready: {url}  (pg_cron jobs: {', '.join(f'{j} [{s}]' for j, s in jobs) or 'none'})")

    configured = [name for name, variables in PROVIDER_ENV.items() if any(os.environ.get(v) for v in variables)]
    # the dispatcher runs as production runs it: a login holding monitoring_dispatcher and nothing more
    env = dict(os.environ, DATABASE_URL=role_login(url, "pgalert_demo_dispatcher", "monitoring_dispatcher"),
               PYTHONUNBUFFERED="1")
    receiver = None
    if configured:
        say(f"Sending for real to: {', '.join(configured)} (the others are skipped)")
    else:
        receiver = FakeProviders(on_request=lambda r: say(f"  received {describe(r)}")).start()
        env.update(receiver.env())
        say(f"No provider configured: local receivers on {receiver.base_url} print what each provider would get.")

    log_path = server.base_dir / "dispatcher.log"
    if receiver:  # the dispatcher adds Acknowledge and Resolve buttons to Slack messages
        env["SLACK_SIGNING_SECRET"] = DEMO_SLACK_SIGNING_SECRET
    say(f"Starting the dispatcher (its log: {log_path})")
    dispatcher = subprocess.Popen([sys.executable, "-m", "dispatcher", "dispatch", "--pacing", "off"],
                                  env=env, stderr=open(log_path, "ab"))  # noqa: SIM115 - lives as long as the child
    serve = None
    try:
        serve_log = server.base_dir / "serve.log"
        # serve's login as the docs make it: monitoring_inbound, and monitoring_console for the console
        serve, serve_url = start_serve(role_login(url, "pgalert_demo_serve", "monitoring_inbound,monitoring_console"),
                                       serve_log, env=serve_env(receiver) if receiver else {})
        say(f"Started pgalert serve on {serve_url}: the console, and where PagerDuty and Slack call back "
            f"(its log: {serve_log})")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT monitoring_console_save_user(%s, 'Demo Admin', 'admin', %s)",
                         (DEMO_CONSOLE_LOGIN, hash_password(DEMO_CONSOLE_PASSWORD)))
        time.sleep(1.0)
        with psycopg.connect(url, autocommit=True) as conn:
            # a second run starts clean: earlier demo alerts would deduplicate the new ones
            leftover = conn.execute("SELECT monitoring_resolve_alert(id, 'demo') FROM monitoring_alerts "
                                    "WHERE status <> 'resolved' AND alert_type = ANY(%s)",
                                    ([a for a, *_ in SEED],)).rowcount
            if leftover:
                say(f"\n0. Resolved {leftover} alert(s) an earlier demo left open (their follow-ups go out too).")
                time.sleep(0.5)
            say("\n1. The seed's alerts, INSERTed as an app would:")
            ids = []
            for alert_type, severity, title, message in SEED:
                statement = ("INSERT INTO monitoring_alerts (alert_type, severity, title, message) "
                             f"VALUES ('{alert_type}', '{severity}', '{title}', '{message}');")
                say(f"   {statement}")
                conn.execute(statement)
                ids.append(conn.execute("SELECT id FROM monitoring_alerts WHERE alert_type = %s AND status = 'open'",
                                        (alert_type,)).fetchone()[0])
            wait_for_deliveries(conn)
            keys = dict(conn.execute(
                "SELECT a.id, 'pgalert-' || left(replace(i.installation_id::text, '-', ''), 8) || '-' || a.id "
                "FROM monitoring_alerts AS a, _monitoring_installation AS i WHERE a.id = ANY(%s)", (ids,)).fetchall())
            if receiver:
                say(f"\n2. Alice taps Acknowledge in the PagerDuty app; PagerDuty's signed webhook comes back "
                    f"(alert {ids[0]}):")
                answer = pagerduty_acknowledges(serve_url, receiver, keys[ids[0]], "Alice")
                say(f"   pgalert serve answered {answer}: Slack is told, PagerDuty is not told its own news")
            else:
                say(f"\n2. Acknowledged: SELECT monitoring_acknowledge_alert({ids[0]}, 'alice', 'looking into it');")
                conn.execute("SELECT monitoring_acknowledge_alert(%s, 'alice', 'looking into it')", (ids[0],))
            wait_for_deliveries(conn)
            say(f"\n3. Acknowledged with SQL: SELECT monitoring_acknowledge_alert({ids[1]}, 'bob', 'on it');")
            conn.execute("SELECT monitoring_acknowledge_alert(%s, 'bob', 'on it')", (ids[1],))
            wait_for_deliveries(conn)
            if receiver:
                say(f"\n4. Bob clicks Resolve on the Slack message of alert {ids[1]}; Slack's signed request "
                    "comes back:")
                status = slack_button_clicked(serve_url, receiver, keys[ids[1]], "U0BOB", "bob")
                say(f"   pgalert serve answered HTTP {status}; Opsgenie is closed and the Slack message updated")
                wait_for_deliveries(conn)
                say(f"\n5. Resolved with SQL: SELECT monitoring_resolve_alert({ids[0]}, 'alice');")
                conn.execute("SELECT monitoring_resolve_alert(%s, 'alice')", (ids[0],))
            else:
                say(f"\n4. Resolved: SELECT monitoring_resolve_alert(id, 'alice') for alerts {ids[0]} and {ids[1]}")
                for alert_id in ids[:2]:
                    conn.execute("SELECT monitoring_resolve_alert(%s, 'alice')", (alert_id,))
            wait_for_deliveries(conn)
            say("\nEvery delivery, as recorded in monitoring_deliveries:")
            show_deliveries(conn, ids)
            say("\nWho did what, and where (monitoring_alerts):")
            for row in conn.execute("SELECT id, status, acknowledged_by, acknowledged_via, resolved_by, resolved_via "
                                    "FROM monitoring_alerts WHERE id = ANY(%s) ORDER BY id", (ids[:2],)):
                say("  alert {:>3}  {:<13} acknowledged by {} via {}; resolved by {} via {}".format(*row))
            for alert_type, severity, title, source, details in LEFT_OPEN:
                conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, source, details) "
                             "VALUES (%s, %s, %s, %s, %s)", (alert_type, severity, title, source, details))
            say(f"\n6. Left open for the console: {', '.join(title for _, _, title, _, _ in LEFT_OPEN)}")
        example = ("INSERT INTO monitoring_alerts (alert_type, severity, title, message) "
                   "VALUES ('payment_failure', 'critical', 'Checkout down', 'raised from psql')")
        say(f"""
pgalert is running.

  Console: {serve_url}/console/   sign in as {DEMO_CONSOLE_LOGIN} / {DEMO_CONSOLE_PASSWORD}

In another terminal, raise your own alert and watch it appear in the console and go out here:

  psql {url} -c "{example}"
  psql {url} -c "SELECT * FROM monitoring_deliveries ORDER BY id DESC LIMIT 5"

Press Ctrl-C to stop.""")
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        while dispatcher.poll() is None:
            time.sleep(0.5)
        say(f"The dispatcher exited with {dispatcher.returncode}; see {log_path}")
    except KeyboardInterrupt:
        pass
    finally:
        say("\nStopping the dispatcher ...")
        dispatcher.send_signal(signal.SIGTERM)
        try:
            dispatcher.wait(15)
        except subprocess.TimeoutExpired:
            # its shutdown deadline is 8 s: past 15 something is stuck, and its log says what
            say(f"The dispatcher did not stop within 15 s; killed it. Its log: {log_path}")
            dispatcher.kill()
            dispatcher.wait()
        if serve:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(15)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
        if receiver:
            receiver.stop()
    say(f"Stopped. PostgreSQL keeps running on port {server.port}; "
        f"`python -m devtools.localpg stop --name {server.name}` stops it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
