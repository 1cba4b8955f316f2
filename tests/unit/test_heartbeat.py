"""The dead man's switch: when a dispatcher may say it is alive, and its pings stopping and resuming as the
database, the claim loop, the LISTEN connection and pg_cron fail and mend (in-memory connector, a real HTTP
receiver: the fake providers' healthchecks.io)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from devtools.fake_providers import FakeProviders
from dispatcher.metrics import Metrics
from dispatcher.providers import providers_from_env
from dispatcher.settings import Settings
from dispatcher.worker import Dispatcher
from dispatcher.worker.heartbeat import withheld
from tests.helpers import wait_until
from tests.memory import InMemoryConnector, InMemoryDatabase, ScriptedClient


def working_metrics() -> Metrics:
    metrics = Metrics()
    metrics.listener_connected.set(1)
    metrics.scheduler_running = True
    return metrics


def test_a_dispatcher_that_could_page_may_ping():
    assert withheld(working_metrics(), stale_after=10) is None


@pytest.mark.parametrize(("break_it", "why"), [
    (lambda m: setattr(m, "problem", "database unavailable: connection refused"), "database unavailable"),
    (lambda m: m.listener_connected.set(0), "LISTEN connection is down"),
    (lambda m: setattr(m, "last_loop", time.monotonic() - 60), "claim loop has not turned for 60 s"),
    (lambda m: setattr(m, "scheduler_running", False), "scheduled jobs are not running"),
    (lambda m: setattr(m, "scheduler_running", None), "not been checked yet"),
])
def test_each_failure_withholds_the_ping_and_says_why(break_it, why):
    metrics = working_metrics()
    break_it(metrics)
    assert why in withheld(metrics, stale_after=10)


@pytest.fixture
def receiver():
    fake = FakeProviders().start()
    yield fake
    fake.stop()


def pings(fake: FakeProviders) -> int:
    return len(fake.requests_for("heartbeat", 200))


@pytest.mark.long
def test_pings_stop_while_the_database_or_pg_cron_fails_and_resume_when_they_mend(receiver):
    database = InMemoryDatabase()
    check = str(uuid.uuid4())
    settings = Settings(dispatcher_id="memory:1", pacing={}, poll_seconds=0.2, shutdown_seconds=0.2,
                        health_checks=False, heartbeat_url=f"{receiver.base_url}/heartbeat/{check}",
                        heartbeat_seconds=1.0)
    dispatcher = Dispatcher(settings, providers_from_env({}), Metrics(), env={}, connector=InMemoryConnector(database),
                            client=ScriptedClient())
    thread = threading.Thread(target=dispatcher.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: pings(receiver) >= 2, timeout=15)

        def silent() -> bool:
            """No ping for three beats in a row."""
            before = pings(receiver)
            time.sleep(3.2)
            return pings(receiver) == before

        database.down = True
        wait_until(silent, timeout=30, interval=0)
        database.down = False
        resumed = pings(receiver)
        wait_until(lambda: pings(receiver) >= resumed + 2, timeout=30)

        database.scheduler = (900.0, False)  # pg_cron stopped running pgalert's heartbeat job
        wait_until(silent, timeout=30, interval=0)
        database.scheduler = (5.0, True)
        resumed = pings(receiver)
        wait_until(lambda: pings(receiver) >= resumed + 2, timeout=30)
        assert all(r.path == f"/{check}" for r in receiver.requests_for("heartbeat"))
    finally:
        dispatcher.stop()
        thread.join(10)
    assert not thread.is_alive()
