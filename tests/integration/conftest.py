"""The real dispatcher process, started with `python -m dispatcher dispatch`, against the fake providers."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.fake_providers import FakeProviders
from tests.helpers import FAST, DispatcherProcess


@pytest.fixture
def fake() -> Iterator[FakeProviders]:
    providers = FakeProviders().start()
    yield providers
    providers.stop()


@pytest.fixture
def start_dispatcher(login_url, fake: FakeProviders, tmp_path: Path) -> Iterator[Callable[..., DispatcherProcess]]:
    """Dispatchers as production runs them: each a login that holds monitoring_dispatcher and nothing more."""
    started: list[DispatcherProcess] = []
    dispatcher_url = login_url("monitoring_dispatcher")

    def start(*extra: str, env: dict[str, str] | None = None, name: str | None = None,
              fault: str | None = None) -> DispatcherProcess:
        name = name or f"d{len(started) + 1}"
        process = DispatcherProcess(dispatcher_url, fake.env() if env is None else env,
                                    [*FAST, "--dispatcher-id", name, *extra], tmp_path / f"{name}.log", fault)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.process.poll() is None:
            process.stop(signal.SIGKILL)


