"""A PostgreSQL failover under pgalert: a primary with a synchronous streaming standby, both the test's own
(pg_basebackup, then pg_ctl promote), the primary killed with SIGKILL in the middle of a burst of alerts.

The dispatcher, pgalert serve and the app that writes alerts all use one libpq multi-host URL with
target_session_attrs=read-write, and nothing is restarted: what was committed before the crash pages once it is
delivered from the new primary, serve answers 503 while no primary is reachable and stores the retried alerts
after, the dispatcher's heartbeat stops while it cannot page and resumes, and pg_cron runs pgalert's jobs on the
promoted server with no manual step."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from devtools.fake_providers import FakeProviders
from devtools.localpg import PG_BIN, LocalServer, free_port
from devtools.serve import start_serve
from dispatcher.inbound.verify import new_token, token_sha256
from dispatcher.migrate import migrate
from tests.helpers import FAST, DispatcherProcess, child_environment, wait_until

BEFORE, DURING, AFTER = 15, 15, 15  # alerts raised before the crash, across it, and after the promotion


@pytest.fixture
def cluster() -> Iterator[tuple[LocalServer, LocalServer]]:
    primary = LocalServer(f"ha-primary-{uuid.uuid4().hex[:6]}", free_port())
    standby = None
    try:
        primary.start()
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            migrate(conn, log=lambda *_: None)
            for login, role in (("ha_dispatch", "monitoring_dispatcher"), ("ha_serve", "monitoring_inbound"),
                                ("ha_app", "monitoring_writer")):
                conn.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE "{role}"')
        standby = primary.start_replica(f"ha-standby-{uuid.uuid4().hex[:6]}", free_port())
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            # synchronous: a commit returns only once the standby has it, so no committed alert is lost
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
            wait_until(lambda: conn.execute("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'"
                                            ).fetchone()[0] == 1, timeout=60)
        yield primary, standby
    finally:
        for server in (standby, primary):
            if server is not None:
                server.destroy()


def both(primary: LocalServer, standby: LocalServer, login: str) -> str:
    """The one URL every process is given: both hosts, and only a primary will do."""
    return (f"postgresql://{login}@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/pgalert"
            "?target_session_attrs=read-write&connect_timeout=2")


class Writer(threading.Thread):
    """An app raising one alert after another through the multi-host URL, reconnecting after errors. An INSERT
    that returned its id is committed; one that failed with the connection is unknown, and is tried again."""

    def __init__(self, url: str, count: int):
        super().__init__(daemon=True)
        self.url, self.count = url, count
        self.committed: list[int] = []
        self.committed_at: list[float] = []  # time.perf_counter() of each commit
        self.failures = 0
        self.go = threading.Event()

    def run(self) -> None:
        number, conn = 0, None
        while number < self.count:
            self.go.wait()
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.url, autocommit=True)
                alert_id = conn.execute(
                    "INSERT INTO monitoring_alerts (alert_type, severity, title, source) "
                    "VALUES ('failover_burst', 'critical', 'burst', %s) RETURNING id", (f"n{number}",)).fetchone()[0]
                self.committed.append(alert_id)
                self.committed_at.append(time.perf_counter())
                number += 1
                time.sleep(0.02)  # a burst, not a bulk load: the crash falls in the middle of it
            except psycopg.Error:
                self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.2)
        if conn is not None:
            conn.close()


def paged(fake: FakeProviders) -> dict[int, float]:
    """Each alert PagerDuty was sent a trigger for, and when the first came."""
    first: dict[int, float] = {}
    for request in fake.requests_for("pagerduty", 202):
        event = request.json
        if event["event_action"] == "trigger":
            first.setdefault(event["payload"]["custom_details"]["alert_id"], request.at)
    return first


def kill(server: LocalServer) -> None:
    pid = int((server.data_dir / "postmaster.pid").read_text().split("\n")[0])
    os.kill(pid, signal.SIGKILL)


@pytest.mark.long
def test_a_failover_loses_no_committed_alert_and_needs_no_restart(cluster, tmp_path: Path):
    primary, standby = cluster
    fake = FakeProviders().start()
    token = new_token()
    with psycopg.connect(primary.url(), autocommit=True) as conn:
        conn.execute("SELECT monitoring_create_api_client('alertmanager', %s)", (token_sha256(token),))
    check = str(uuid.uuid4())
    dispatcher = DispatcherProcess(both(primary, standby, "ha_dispatch"), fake.env(),
                                   [*FAST, "--dispatcher-id", "ha", "--heartbeat-url",
                                    f"{fake.base_url}/heartbeat/{check}", "--heartbeat-seconds", "1"],
                                   tmp_path / "dispatch.log")
    serve, serve_url = start_serve(both(primary, standby, "ha_serve"), tmp_path / "serve.log", "--no-console",
                                   env={}, base_env=child_environment())
    writer = Writer(both(primary, standby, "ha_app"), BEFORE + DURING + AFTER)
    writer.start()
    try:
        wait_until(lambda: len(fake.requests_for("heartbeat", 200)) >= 2, timeout=60)
        writer.go.set()
        wait_until(lambda: len(writer.committed) >= BEFORE, timeout=60, interval=0.005)

        kill(primary)  # mid-burst: the writer goes on trying, and fails until there is a primary again
        died = time.perf_counter()
        # no primary now: the standby is read-only, so serve has nowhere to write and says when to come back
        gap = requests.post(serve_url + "/v1/alertmanager", json=am_group("gap"), timeout=15,
                            headers={"Authorization": f"Bearer {token}"})
        assert gap.status_code == 503 and gap.headers["retry-after"]
        pings = len(fake.requests_for("heartbeat", 200))

        def silent() -> bool:
            before = len(fake.requests_for("heartbeat", 200))
            time.sleep(3.2)
            return len(fake.requests_for("heartbeat", 200)) == before

        wait_until(silent, timeout=60, interval=0)  # the dead man's switch stops: the outside service pages

        promoted = PG_BIN / "pg_ctl"
        standby._run(promoted, "promote", "-w", "-D", standby.data_dir)
        promoted_at = time.perf_counter()

        def stored() -> bool:
            answer = requests.post(serve_url + "/v1/alertmanager", json=am_group("gap"), timeout=15,
                                   headers={"Authorization": f"Bearer {token}"})
            return answer.status_code == 200

        wait_until(stored, timeout=60, interval=0.5)  # Alertmanager's retry, stored on the new primary
        writer.join(120)
        assert not writer.is_alive() and len(writer.committed) == BEFORE + DURING + AFTER
        assert writer.failures >= 1  # some INSERTs met the crash: the app saw it and tried again

        with psycopg.connect(standby.url(), autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
            on_new_primary = {row[0] for row in conn.execute(
                "SELECT id FROM monitoring_alerts WHERE alert_type = 'failover_burst'")}
            assert set(writer.committed) <= on_new_primary  # synchronous: nothing committed was lost
            assert conn.execute("SELECT count(*) FROM monitoring_alerts WHERE source = 'alertmanager' "
                                "OR alert_type = 'FailoverProbe'").fetchone()[0] >= 1
        wait_until(lambda: set(writer.committed) <= set(paged(fake)), timeout=120)
        assert set(paged(fake)) <= on_new_primary  # nothing paged that the database does not have
        wait_until(lambda: len(fake.requests_for("heartbeat", 200)) > pings, timeout=60)  # pgalert can page again

        raised_after = [alert_id for alert_id, at in zip(writer.committed, writer.committed_at, strict=True)
                        if at > promoted_at]
        assert raised_after  # the burst went on on the new primary
        first_page = min(paged(fake)[alert_id] for alert_id in raised_after)
        print(f"\nfailover: promoted {promoted_at - died:.2f} s after the primary died (the test's own checks); "
              f"first page of an alert raised on the new primary {first_page - promoted_at:.2f} s after the "
              f"promotion; {writer.failures} INSERTs failed and were retried")

        # pg_cron runs pgalert's jobs on the promoted server without a manual step: the heartbeat job beats
        with psycopg.connect(standby.url(), autocommit=True) as conn:
            checked = conn.execute("SELECT now()").fetchone()[0]
            wait_until(lambda: conn.execute("SELECT beat_at > %s FROM monitoring_scheduler_heartbeat",
                                            (checked,)).fetchone()[0], timeout=150, interval=1)
    finally:
        writer.go.set()
        serve.send_signal(signal.SIGTERM)
        serve.wait(15)
        dispatcher.stop()
        fake.stop()


def am_group(tag: str) -> dict:
    return {"version": "4", "status": "firing", "receiver": "pgalert", "alerts": [{
        "status": "firing", "fingerprint": f"failover-{tag}", "labels": {"alertname": "FailoverProbe",
                                                                          "severity": "warning"},
        "annotations": {"summary": "raised during a failover"}, "startsAt": dt.datetime.now(dt.UTC).isoformat(),
        "endsAt": "0001-01-01T00:00:00Z"}]}
