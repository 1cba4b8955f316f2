"""The dispatcher's settings: one frozen value built from flags and the environment; no I/O here."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

from dispatcher.providers.kinds import default_pacing
from dispatcher.retry import RetryPolicy

DEFAULT_PACING = default_pacing()


@dataclass(frozen=True)
class Pace:
    """At most one send per `interval` seconds on average, with bursts of `burst`."""

    interval: float
    burst: int


def parse_pacing(spec: str) -> dict[str, Pace]:
    """`provider=COUNT/SECONDS[:BURST],...`, e.g. `slack=1/1:3` (Slack: about one message a second); `off` for none."""
    spec = spec.strip()
    if spec in ("", "off", "none"):
        return {}
    paces: dict[str, Pace] = {}
    for item in spec.split(","):
        try:
            provider, rate = item.strip().split("=", 1)
            rate, _, burst = rate.partition(":")
            count, seconds = rate.split("/", 1)
            pace = Pace(float(seconds) / float(count), int(burst or 1))
        except (ValueError, ZeroDivisionError):
            raise ValueError(
                f"pacing {item.strip()!r} is not PROVIDER=COUNT/SECONDS[:BURST], e.g. slack=1/1:3"
            ) from None
        if not 0 < pace.interval < float("inf") or pace.burst < 1:
            raise ValueError(f"pacing {item.strip()!r} needs a positive rate and a burst of at least 1")
        paces[provider.strip()] = pace
    return paces


def default_dispatcher_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Settings:
    database_url: str = ""  # empty: libpq's PG* variables decide
    dispatcher_id: str = field(default_factory=default_dispatcher_id)
    concurrency: int = 64
    batch_size: int = 100
    lease_seconds: float = 60.0
    poll_seconds: float = 5.0
    connect_timeout: float = 3.0
    http_timeout: float = 10.0
    shutdown_seconds: float = 8.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    pacing: dict[str, Pace] = field(default_factory=lambda: parse_pacing(DEFAULT_PACING))
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    health_checks: bool = True
    production_url: str = ""
    heartbeat_url: str = ""  # a dead man's switch pinged while this dispatcher could page (worker/heartbeat.py)
    heartbeat_seconds: float = 60.0
    # who runs pgalert's scheduled jobs: pg_cron, this and the other dispatchers, or auto (pg_cron while it can)
    scheduler: str = "auto"
