"""What the dispatcher does with a database it cannot work on: refuse at start what retrying cannot mend,
and otherwise wait, say what is wrong once, and answer 503 on /healthz until it can work."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psycopg
import pytest

from devtools.serve import role_login
from dispatcher.migrate import migrate
from tests.helpers import SERVER, child_environment, wait_until


def dispatch(url: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dispatcher", "dispatch", "--pacing", "off", *args],
                          env=child_environment(DATABASE_URL=url), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("url", "said"), [
    (SERVER.url("pgalert_no_such_database"), 'database "pgalert_no_such_database" does not exist'),
    (f"postgresql://pgalert_no_such_role@127.0.0.1:{SERVER.port}/postgres", 'role "pgalert_no_such_role" does not exist'),
    (f"postgresql://postgres:s3cret-pw@127.0.0.1:{SERVER.port}x/postgres", "invalid"),
    (f"host=127.0.0.1 port={SERVER.port} password=s3cret-pw dbname", "missing"),
])
def test_a_database_url_that_cannot_work_is_refused_at_start_with_a_clear_error(url, said):
    result = dispatch(url)
    assert result.returncode == 1, result.stderr
    assert "cannot use DATABASE_URL" in result.stderr and said in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def health(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return 0, {}


@pytest.mark.cluster_roles  # migrates a database of its own: roles are the cluster's
def test_an_unmigrated_database_is_unhealthy_said_once_and_worked_on_once_migrated(empty_db, tmp_path):
    port = free_port()
    # as its documented role: roles are the cluster's, so it exists before this database is migrated
    dispatcher_url = role_login(empty_db, "pgalert_startup_dispatcher", "monitoring_dispatcher")
    log = tmp_path / "dispatcher.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "dispatcher", "dispatch", "--pacing", "off", "--poll-seconds", "0.5",
         "--metrics-port", str(port), "--no-health-checks"],
        env=child_environment(DATABASE_URL=dispatcher_url), stdout=subprocess.DEVNULL, stderr=open(log, "w"),  # noqa: SIM115
    )
    try:
        # 503 also while it is still connecting; wait for the verdict on the schema itself
        status, state = wait_until(lambda: (reply := health(port))[1].get("problem") and reply)
        assert status == 503 and "not migrated" in state["problem"], state
        # several of its rechecks later the log still says it once
        deadline = time.monotonic() + 3
        wait_until(lambda: time.monotonic() > deadline, timeout=5)
        assert log.read_text().count("database is not migrated") == 1, log.read_text()
        with psycopg.connect(empty_db, autocommit=True) as conn:
            migrate(conn, log=lambda *_: None)
        status, state = wait_until(lambda: (reply := health(port))[0] == 200 and reply, timeout=20)
        assert state["problem"] is None
        assert "dispatcher working" in log.read_text()
    finally:
        process.terminate()
        assert process.wait(15) == 0
