"""What tests share: the seed statement, waiting on a condition, the dispatcher process, fixtures' data and
checkers that more than one test module uses. Test modules import from here, never from each other."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from hypothesis import strategies as st

from devtools.localpg import test_server
from dispatcher.providers.base import HttpRequest
from dispatcher.providers.opsgenie import Opsgenie
from dispatcher.providers.pagerduty import PagerDuty
from dispatcher.providers.sentry import Sentry, parse_sentry_target
from dispatcher.providers.slack import Slack
from dispatcher.providers.webhook import Webhook

SERVER = test_server()


SEED_CRITICAL = (
    "INSERT INTO monitoring_alerts (alert_type, severity, title, message) "
    "VALUES ('payment_failure', 'critical', 'Test', 'Test PagerDuty');"
)


def deliveries(conn: psycopg.Connection, alert_id: int | None = None) -> list[tuple]:
    """(provider, action, status) of every delivery, in id order."""
    sql = "SELECT provider, action, status FROM monitoring_deliveries"
    if alert_id is not None:
        return conn.execute(sql + " WHERE alert_id = %s ORDER BY id", (alert_id,)).fetchall()
    return conn.execute(sql + " ORDER BY id").fetchall()


# --scheduler pg_cron: the test databases are not pg_cron's, and the tests run the scheduled jobs they mean to
# (a dispatcher in auto would run them all); tests of the dispatchers' scheduler pass --scheduler themselves
FAST = ["--poll-seconds", "0.5", "--backoff-base", "0.2", "--backoff-cap", "1", "--http-timeout", "1",
        "--lease-seconds", "6", "--pacing", "off", "--shutdown-seconds", "3", "--scheduler", "pg_cron"]


# what a child process may inherit from the test run's environment: how to find programs and speak the locale,
# never a provider's secret, a proxy or a database URL that happens to be set where the suite runs
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "VIRTUAL_ENV")


def child_environment(**variables: str) -> dict[str, str]:
    """The environment a process the tests start gets: INHERITED from this one, then exactly `variables`."""
    return {**{name: os.environ[name] for name in INHERITED if name in os.environ}, "PYTHONUNBUFFERED": "1",
            **variables}


class DispatcherProcess:
    def __init__(self, db_url: str, env: dict[str, str], args: list[str], log: Path, fault: str | None = None):
        """`fault`: Python run in the process before the dispatcher starts, to plant a defect no outside
        switch can cause (a thread that dies)."""
        self.log = log
        program = ["-m", "dispatcher"] if fault is None else ["-c", f"{fault}\nfrom dispatcher.cli import main\nmain()"]
        self.process = subprocess.Popen(
            [sys.executable, *program, "dispatch", *args],
            env=child_environment(**env, DATABASE_URL=db_url),
            stdout=subprocess.DEVNULL, stderr=open(log, "ab"),  # noqa: SIM115 - owned by the process
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    @property
    def output(self) -> str:
        return self.log.read_text()


def wait_until(check: Callable[[], object], timeout: float = 20.0, interval: float = 0.05) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


def statuses(conn) -> list[tuple[str, str, str]]:
    return conn.execute("SELECT provider, action, status FROM monitoring_deliveries ORDER BY id").fetchall()


def all_final(conn) -> bool:
    return conn.execute("SELECT count(*) > 0 AND bool_and(status IN ('succeeded', 'failed', 'skipped')) "
                        "FROM monitoring_deliveries").fetchone()[0]


TWO_TEAMS = """
INSERT INTO monitoring_providers (provider, kind, secret_refs, description) VALUES
  ('pagerduty_payments', 'pagerduty', '{"routing_key": "env:PAGERDUTY_KEY_PAYMENTS"}', 'Payments service'),
  ('slack_payments', 'slack', '{"webhook_url": "env:SLACK_WEBHOOK_PAYMENTS"}', '#payments');
INSERT INTO monitoring_routes (alert_type, provider) VALUES
  ('payment_failure', 'pagerduty_payments'), ('payment_failure', 'slack_payments');
"""


DASHBOARD = Path(__file__).resolve().parents[1] / "dashboards" / "pgalert-sla.json"

TIME_FROM, TIME_TO = "'2026-11-25T00:00:00Z'", "'2026-11-26T00:00:00Z'"


def expand_grafana_macros(sql: str) -> str:
    """The PostgreSQL data source's macros this dashboard uses, as Grafana expands them."""
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {TIME_FROM} AND {TIME_TO}", sql)
    sql = sql.replace("$__timeFrom()", TIME_FROM).replace("$__timeTo()", TIME_TO)
    assert "$__" not in sql, f"unexpanded macro in: {sql}"
    return sql


def queries():
    dashboard = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["rawSql"], p["type"]) for p in dashboard["panels"] for t in p["targets"]]


PROVIDERS = {
    "pagerduty": PagerDuty("pd-routing-key", "https://events.pagerduty.com/v2/enqueue"),
    "opsgenie": Opsgenie("og-key", "https://api.opsgenie.com"),
    "slack": Slack("https://hooks.slack.com/services/T0/B0/X"),
    "sentry": Sentry(parse_sentry_target("https://public@o1.ingest.sentry.io/42")),
    "webhook": Webhook("https://hooks.example.com/pgalert", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=20), children, max_size=6),
    max_leaves=30,
)


def assert_within_limits(provider: str, request: HttpRequest) -> None:
    body = request.body
    if provider == "pagerduty":
        event = json.loads(body)
        assert len(body) <= 512 * 1024
        assert len(event["dedup_key"]) <= 255
        if "payload" in event:
            assert len(event["payload"]["summary"]) <= 1024 and len(event["payload"]["source"]) <= 255
    elif provider == "opsgenie":
        document = json.loads(body)
        if "alias" in document:
            assert len(document["message"]) <= 130 and len(document["alias"]) <= 512
            assert len(document["description"]) <= 15000 and len(document.get("entity", "")) <= 512
            assert sum(len(k) + len(v) for k, v in document["details"].items()) <= 8000
            assert len(document["tags"]) <= 20 and all(len(tag) <= 50 for tag in document["tags"])
    elif provider == "slack":
        message = json.loads(body)
        assert len(message.get("blocks", [])) <= 50 and len(message["text"]) <= 40000
        for block in message.get("blocks", []):
            for text in [block.get("text")] + block.get("fields", []):
                assert text is None or len(text["text"]) <= 3000
    elif provider == "sentry":
        assert len(body) <= 1024 * 1024
        item = json.loads(body.split(b"\n")[2])
        assert len(item["message"]["formatted"]) <= 8192
    elif provider == "webhook":
        assert len(body) <= 512 * 1024


def make_schedule(conn, name, zone, people, start="2026-01-05", handoff_day=1, handoff_time="09:00",
                  length="7 days") -> None:
    """An on-call schedule rotating through `people` (made if missing), in one transaction as the check wants."""
    with conn.transaction():
        for person in people:
            conn.execute("INSERT INTO monitoring_people (name) VALUES (%s) ON CONFLICT DO NOTHING", (person,))
        conn.execute("INSERT INTO monitoring_oncall_schedules (name, time_zone, rotation_start, handoff_day, handoff_time, rotation_length) "
                     "VALUES (%s, %s, %s, %s, %s, %s)", (name, zone, start, handoff_day, handoff_time, length))
        for position, person in enumerate(people, 1):
            conn.execute("INSERT INTO monitoring_oncall_participants SELECT s.id, %s, p.id FROM monitoring_oncall_schedules s, "
                         "monitoring_people p WHERE s.name = %s AND p.name = %s", (position, name, person))
