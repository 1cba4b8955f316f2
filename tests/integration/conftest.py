"""The real dispatcher process, started with `python -m dispatcher dispatch`, against the fake providers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.fake_providers import FakeProviders

FAST = ["--poll-seconds", "0.5", "--backoff-base", "0.2", "--backoff-cap", "1", "--http-timeout", "1",
        "--lease-seconds", "6", "--pacing", "off", "--shutdown-seconds", "3"]


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    providers = FakeProviders().start()
    yield providers
    providers.stop()


class DispatcherProcess:
    def __init__(self, db_url: str, env: dict[str, str], args: list[str], log: Path):
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dispatcher", "dispatch", *args],
            env={**os.environ, **env, "DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.DEVNULL, stderr=open(log, "ab"),  # noqa: SIM115 - owned by the process
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    @property
    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def start_dispatcher(login_url, fake: FakeProviders, tmp_path: Path) -> Iterator[Callable[..., DispatcherProcess]]:
    """Dispatchers as production runs them: each a login that holds monitoring_dispatcher and nothing more."""
    started: list[DispatcherProcess] = []
    dispatcher_url = login_url("monitoring_dispatcher")

    def start(*extra: str, env: dict[str, str] | None = None, name: str | None = None) -> DispatcherProcess:
        name = name or f"d{len(started) + 1}"
        process = DispatcherProcess(dispatcher_url, fake.env() if env is None else env,
                                    [*FAST, "--dispatcher-id", name, *extra], tmp_path / f"{name}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            process.stop(signal.SIGKILL)


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
