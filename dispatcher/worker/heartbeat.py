"""Who watches pgalert: a dead man's switch. Every --heartbeat-seconds the dispatcher pings a URL of an outside
service (healthchecks.io, Cronitor, a PagerDuty heartbeat, ...) that pages when the pings stop. It pings only
while it could page itself: its claim loop turns, the database answers, its LISTEN connection is up, and pgalert's
scheduled jobs run. When any of those fails the pings stop and the outside service pages; they resume when it
mends. Every dispatcher pings, so the service pages only when none of them can."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import requests

from dispatcher import logs
from dispatcher.metrics import Metrics

PING_TIMEOUT = 10.0


def withheld(metrics: Metrics, stale_after: float) -> str | None:
    """Why this dispatcher must not say it is alive now, or None when it may."""
    healthy, state = metrics.healthy(stale_after)
    if state["problem"]:
        return state["problem"]
    if not state["listener_connected"]:
        return "the LISTEN connection is down"
    if not healthy:
        return f"the claim loop has not turned for {state['loop_age_seconds']:.0f} s"
    if metrics.scheduler_running is not True:
        return "pgalert's scheduled jobs are not running" if metrics.scheduler_running is False \
            else "the scheduled jobs have not been checked yet"
    return None


def heartbeat_forever(url: str, every: float, stale_after: float, metrics: Metrics, stopping: threading.Event,
                      clean: Callable[[str | None], str | None], session: requests.Session | None = None) -> None:
    session = session or requests.Session()
    said: str | None = ""  # what was logged last, so a state is logged when it starts, not at every beat
    next_beat = time.monotonic() + every
    while not stopping.wait(max(next_beat - time.monotonic(), 0)):
        next_beat += every
        why = withheld(metrics, stale_after)
        if why:
            if why != said:
                logs.warning("heartbeat withheld: the outside service will page", reason=why)
                said = why
            continue
        try:
            reply = session.get(url, timeout=PING_TIMEOUT)
            failure = None if reply.status_code < 400 else f"HTTP {reply.status_code}"
        except requests.RequestException as error:
            failure = clean(f"{type(error).__name__}: {error}")
        if failure and failure != said:
            logs.warning("heartbeat ping failed", error=failure)
        elif not failure and said:
            logs.info("heartbeat pings again")
        said = failure
