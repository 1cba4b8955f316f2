"""Health probes: run one HTTP check and say how it went. The loop that claims checks lives in worker/health.py."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import requests

from dispatcher.http import ca_bundle
from dispatcher.redact import redact


@dataclass(frozen=True)
class Check:
    check_id: int
    name: str
    url: str  # http(s)://... or env:NAME
    method: str
    expected_status: int
    timeout_seconds: float


@dataclass(frozen=True)
class Outcome:
    status: int | None
    response_ms: float | None
    error: str | None


# The variables a health check may name: an admin chooses the check, the dispatcher's operator what it may read,
# so no check can make a dispatcher request (and report on) a URL kept in one of its other secrets.
PROBE_VARIABLE = re.compile(r"PRODUCTION_URL|PGALERT_PROBE_[A-Z0-9_]{1,64}")


class UnusableUrl(ValueError):
    """A check's env: reference that this dispatcher will not, or cannot, resolve; the message says which."""


def resolve_url(url: str, env: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """The URL to call and the secrets to keep out of errors."""
    if not url.startswith("env:"):
        return url, ()
    name = url[4:]
    if not PROBE_VARIABLE.fullmatch(name):
        raise UnusableUrl(f"env:{name[:80]} is not a variable health checks may read (PRODUCTION_URL or "
                          "PGALERT_PROBE_<NAME>)")
    value = (env.get(name) or "").strip()
    if not value:
        raise UnusableUrl(f"{name} is not set on this dispatcher")
    return value, (value,)


def session() -> requests.Session:
    """The probes' keep-alive session (deliveries use dispatcher.http). trust_env is off so that no .netrc
    password is ever sent to a probed URL; proxies are passed per request instead, as deliveries find them."""
    probe_session = requests.Session()
    probe_session.trust_env = False
    probe_session.verify = ca_bundle()  # the same bundle as deliveries
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4)
    probe_session.mount("http://", adapter)
    probe_session.mount("https://", adapter)
    return probe_session


def run_check(session: requests.Session, check: Check, env: Mapping[str, str]) -> Outcome:
    try:
        url, secrets = resolve_url(check.url, env)
    except UnusableUrl as refusal:
        return Outcome(None, None, str(refusal))
    started = time.perf_counter()
    try:
        with session.request(check.method, url, timeout=check.timeout_seconds, allow_redirects=False,
                             stream=True, proxies=requests.utils.get_environ_proxies(url)) as reply:
            elapsed = (time.perf_counter() - started) * 1000
            return Outcome(reply.status_code, round(elapsed, 2), None)
    except requests.Timeout:
        return Outcome(None, None, f"timed out after {check.timeout_seconds:g}s")
    except requests.RequestException as error:
        return Outcome(None, None, redact(f"{type(error).__name__}: {error}", secrets)[:500])
