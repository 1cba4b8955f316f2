"""`make demo` as a new user runs it: its own PostgreSQL, the seed routed, acknowledged and resolved, then Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from devtools.localpg import LocalServer
from dispatcher.providers import PROVIDER_ENV

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_demo(port: int) -> str:
    """`make demo` until it says it is ready, then Ctrl-C; its whole output."""
    env = {name: value for name, value in os.environ.items()
           if name not in {variable for variables in PROVIDER_ENV.values() for variable in variables}}
    env.update(PGALERT_DEMO_NAME="demo-test", PGALERT_DEMO_PORT=str(port), PYTHONUNBUFFERED="1")
    demo = subprocess.Popen([sys.executable, "-m", "devtools.demo"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C to stop."):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    server = LocalServer("demo-test", port)
    try:
        assert ready.wait(120), "".join(lines)
        demo.send_signal(signal.SIGINT)
        try:
            code = demo.wait(30)
        except subprocess.TimeoutExpired:
            demo.send_signal(signal.SIGUSR1)  # the demo prints every thread's stack (faulthandler)
            with contextlib.suppress(subprocess.TimeoutExpired):
                demo.wait(2)  # a moment to print them; it is stuck, so it will not end by itself
            demo.kill()
            reader.join(5)
            log = server.base_dir / "dispatcher.log"
            raise AssertionError("the demo did not stop within 30 s of Ctrl-C:\n" + "".join(lines)
                                 + (log.read_text()[-4000:] if log.exists() else "")) from None
        assert code == 0, "".join(lines)
        reader.join(5)
    finally:
        if demo.poll() is None:
            demo.kill()
    return "".join(lines)


def test_the_demo_routes_acknowledges_and_resolves_the_seed_then_stops_on_ctrl_c():
    port = free_port()
    try:
        first = run_demo(port)
        # a user runs it again on the same database: what the first run created is reused, not refused
        output = run_demo(port)
    finally:
        LocalServer("demo-test", port).destroy()
    assert "Resolved 1 alert(s) an earlier demo left open" in output and "Traceback" not in first + output

    assert "No provider configured: local receivers" in output
    assert "/console/   sign in as demo / pgalert-demo-only" in output and "Left open for the console" in output
    for seed in ("'payment_failure', 'critical', 'Test', 'Test PagerDuty'",
                 "'api_response_degradation', 'warning', 'Test', 'Test Opsgenie'",
                 "'deploy_finished', 'info', 'Test', 'Test Slack'"):
        assert f"VALUES ({seed});" in output
    for received in ("[pagerduty <- 202] trigger", "[pagerduty <- 202] resolve",
                     "[ opsgenie <- 202] create", "[ opsgenie <- 202] acknowledge", "[ opsgenie <- 202] close",
                     "[   sentry <- 200] level=fatal", "[    slack <- 200] :red_circle: [critical] Test: Test PagerDuty",
                     # the way back: PagerDuty's webhook, mapped through its REST API, and a Slack button click
                     "[pagerduty-api <- 200] GET /incidents/", "*Acknowledged* by Alice in PagerDuty",
                     "message updated: :white_check_mark: Resolved by <@U0BOB>"):
        assert received in output
    assert "[pagerduty <- 202] acknowledge" not in output  # PagerDuty is not sent back its own acknowledge
    table = output.split("Every delivery, as recorded in monitoring_deliveries:")[1].split("Who did what")[0]
    rows = [line.split() for line in table.strip().splitlines()[1:]]
    assert {(row[1], row[2]) for row in rows} == {
        ("pagerduty", "trigger"), ("pagerduty", "resolve"), ("slack", "trigger"), ("slack", "notify"),
        ("slack", "acknowledge"), ("slack", "resolve"), ("sentry", "trigger"),
        ("opsgenie", "trigger"), ("opsgenie", "acknowledge"), ("opsgenie", "resolve")}
    assert "acknowledged by Alice via pagerduty; resolved by alice via sql" in output
    # bob is not in monitoring_people: recorded by the name Slack gave and his Slack id
    assert "acknowledged by bob via sql; resolved by bob (slack U0BOB) via slack" in output
    assert {row[3] for row in rows} == {"succeeded"}
    assert re.search(rf"psql postgresql://\S+:{port}/pgalert -c \"INSERT INTO monitoring_alerts", output)
    assert "Stopped." in output
