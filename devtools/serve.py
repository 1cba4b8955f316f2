"""`pgalert serve` as the demo, the benchmark and the tests start it: its own process on a free port, logging
to a file, as a login that holds only its documented roles (monitoring_inbound, and monitoring_console for the
console); returned once /healthz answers 200."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import requests

from devtools.localpg import free_port


def role_login(url: str, login: str, role: str = "monitoring_inbound") -> str:
    """`url` for `login`, a LOGIN role holding only `role` (serve's monitoring_inbound, the dispatcher's
    monitoring_dispatcher; several comma-separated), made if missing (roles are cluster-wide, so a second run
    finds it)."""
    roles = ", ".join(f'"{name.strip()}"' for name in role.split(","))
    with psycopg.connect(url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone():
            conn.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE {roles}')
    return url.replace("postgresql://postgres@", f"postgresql://{login}@", 1)


def start_serve(database_url: str, log: Path, *args: str, env: dict[str, str] | None = None,
                timeout: float = 30, base_env: dict[str, str] | None = None,
                port: int | None = None, host: str = "127.0.0.1") -> tuple[subprocess.Popen, str]:
    """The process and its base URL, its environment `env` over `base_env` (default: this process's), on `host`
    and `port` or a free one. Raises with the end of its log if it exits or is not healthy in time."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "serve", "--host", host, "--port", str(port), *args],
        env={**(os.environ if base_env is None else base_env), **(env or {}), "DATABASE_URL": database_url,
             "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL, stderr=open(log, "ab"),  # noqa: SIM115 - owned by the child
    )
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(base + "/healthz", timeout=2).status_code == 200:
                return process, base
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.wait()
    raise RuntimeError(f"pgalert serve did not become healthy ({log}):\n{log.read_text()[-4000:]}")
