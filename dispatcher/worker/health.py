"""The health probes' loop: claim due checks (one dispatcher per check), run them, record each result as events."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import requests

from dispatcher import logs, probes
from dispatcher.worker.backoff import Backoff
from dispatcher.worker.connector import Connector

PROBE_THREADS = 4
PROBE_CLAIM_MAX = 8


def probe_forever(connector: Connector, production_url: str, stopping: threading.Event,
                  clean: Callable[[str | None], str | None]) -> None:
    backoff = Backoff()
    last_error: str | None = None
    session = probes.session()
    with ThreadPoolExecutor(PROBE_THREADS, thread_name_prefix="probe") as pool:
        while not stopping.is_set():
            try:
                with connector.session("probes") as db_session:
                    queries = db_session.queries
                    if production_url:
                        queries.ensure_health_check("production", "env:PRODUCTION_URL", 300)
                    while not stopping.is_set():
                        checks = [probes.Check(*row) for row in queries.claim_health_checks(PROBE_CLAIM_MAX)]
                        outcomes = pool.map(_probe, [session] * len(checks), checks)
                        for check, outcome in zip(checks, outcomes, strict=True):
                            queries.record_health_check(check.check_id, outcome.status, outcome.response_ms,
                                                        outcome.error)
                        backoff.reset()
                        last_error = None
                        stopping.wait(1.0)
            except psycopg.Error as error:
                delay = backoff.next()
                message = clean(str(error).strip())
                if message != last_error:  # once, not at every retry
                    logs.warning("health probes paused", error=message)
                    last_error = message
                stopping.wait(delay)


def _probe(session: requests.Session, check: probes.Check) -> probes.Outcome:
    outcome = probes.run_check(session, check, os.environ)
    logs.info("health check", check=check.name, status=outcome.status, ms=outcome.response_ms,
              **({"error": outcome.error} if outcome.error else {}))
    return outcome
