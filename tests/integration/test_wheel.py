"""What a user installs: the wheel, in a fresh venv outside the checkout, migrates an empty database and
dispatches. Nothing here imports from the checkout into the installed program."""

from __future__ import annotations

import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest

from devtools.serve import role_login
from tests.helpers import all_final, child_environment, wait_until

# the installed wheel migrates a database of its own (roles are the cluster's)
pytestmark = pytest.mark.cluster_roles

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The `pgalert` command of a wheel built from this tree and installed into a new venv."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(REPO)],
                   check=True, capture_output=True, cwd=work)
    wheel = next((work / "dist").glob("pgalert-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "dispatcher/sql/migrations/0001_core.sql" in names and "dispatcher/sql/install.psql" in names
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    subprocess.run([str(work / "venv" / "bin" / "pip"), "install", "-q", str(wheel)],
                   check=True, capture_output=True, cwd=work)
    return work / "venv" / "bin" / "pgalert"


def run(pgalert: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # cwd is a directory with no sql/ and no dispatcher/: the installed package must carry its own SQL
    return subprocess.run([str(pgalert), *args], capture_output=True, text=True, cwd=pgalert.parent,
                          env=wheel_environment(**env))


def wheel_environment(**variables: str) -> dict[str, str]:
    """The installed wheel's own venv and nothing of the checkout's (no VIRTUAL_ENV, no PYTHONPATH)."""
    return {k: v for k, v in child_environment(**variables).items() if k != "VIRTUAL_ENV"}


@pytest.mark.integration
def test_the_installed_wheel_migrates_an_empty_db_and_dispatches(installed, empty_db, fake):
    env = {"DATABASE_URL": empty_db}
    check = run(installed, "migrate", "--check", env=env)
    assert check.returncode == 1 and "pending: migrations/0001_core.sql" in check.stdout, check.stderr
    migrated = run(installed, "migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert run(installed, "migrate", "--check", env=env).returncode == 0

    dispatcher = subprocess.Popen(
        [str(installed), "dispatch", "--pacing", "off", "--poll-seconds", "0.5", "--dispatcher-id", "wheel"],
        env=wheel_environment(**fake.env(), DATABASE_URL=role_login(empty_db, "pgalert_wheel_dispatcher",
                                                                   "monitoring_dispatcher")),
        cwd=installed.parent,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        with psycopg.connect(empty_db, autocommit=True) as conn:
            conn.execute("DELETE FROM monitoring_escalation_assignments")
            conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message) "
                         "VALUES ('payment_failure', 'critical', 'Test', 'Test PagerDuty')")
            wait_until(lambda: all_final(conn))
            rows = conn.execute("SELECT provider, status FROM monitoring_deliveries ORDER BY provider").fetchall()
        assert rows == [("pagerduty", "succeeded"), ("sentry", "succeeded"), ("slack", "succeeded")]
    finally:
        dispatcher.send_signal(signal.SIGTERM)
        assert dispatcher.wait(15) == 0, dispatcher.stderr.read()
