"""#26's storm to a person: with a group rule on, a one-statement storm of 20,000 alerts of three types becomes one
PagerDuty event and one Slack message per group, sent group_wait after the groups opened. Measured against a
running dispatcher and the fake providers (out of this process's database session), with the dispatcher's memory."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from devtools.fake_providers import FakeProviders

GROUP_WAIT = 10.0  # seconds


def run(url: str, fake: FakeProviders, log_dir: Path, report: Callable[..., None],
        start_dispatcher: Callable[..., subprocess.Popen], stop: Callable[[subprocess.Popen], None],
        peak_rss_mb: Callable[[int], float], alerts: int = 20_000) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO monitoring_group_rules (name, matchers, group_by, group_wait) VALUES "
                     "('storm', '[{\"field\": \"severity\", \"op\": \"=\", \"value\": \"critical\"}]', '{alert_type}', "
                     "make_interval(secs => %s))", (GROUP_WAIT,))
        dispatcher = start_dispatcher(url, fake, "grouping", log_dir)
        try:
            time.sleep(2)  # the dispatcher connected and listening; nothing is due
            before = len(fake.received)
            started = time.perf_counter()
            conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, dedup_key) "
                         "SELECT 'storm_' || (g %% 3), 'critical', 'Storm', 'storm:' || g "
                         "FROM generate_series(1, %s) AS g",
                         (alerts,))
            queried = time.perf_counter()
            opened = conn.execute("SELECT extract(epoch FROM clock_timestamp() - min(opened_at)) "
                                  "FROM monitoring_alert_groups").fetchone()[0]
            groups = conn.execute("SELECT count(*) FROM monitoring_alert_groups").fetchone()[0]
            fake.wait_for(lambda received: sum(1 for r in received[before:] if r.provider in ("pagerduty", "slack"))
                          >= 2 * groups, timeout=GROUP_WAIT + 120)
            time.sleep(2)  # anything more that would come
            memory = peak_rss_mb(dispatcher.pid)
        finally:
            stop(dispatcher)
    sent = fake.received[before:]
    pagerduty = [r for r in sent if r.provider == "pagerduty"]
    slack = [r for r in sent if r.provider == "slack"]
    # when the first group opened (its first alert's created_at, the INSERT's transaction time), on this clock
    due = queried - float(opened) + GROUP_WAIT
    late_pd = max(r.at for r in pagerduty) - due
    late_slack = max(r.at for r in slack) - due
    report(f"storm of {alerts:,} alerts with a group rule: PagerDuty events", f"{len(pagerduty)}",
           f"{groups} groups", f"goal <= {groups}")
    report("storm with a group rule: last PagerDuty event after group_wait", f"{late_pd:+.2f} s",
           f"group_wait {GROUP_WAIT:.0f} s", "goal <= +1 s")
    report("storm with a group rule: Slack messages", f"{len(slack)} (last {late_slack:+.2f} s after group_wait)",
           f"{groups} groups", "goal: the digest per group, <= +1 s")
    report(f"storm with a group rule: the INSERT of {alerts:,}", f"{queried - started:.2f} s", "", "")
    report("dispatcher peak memory through the grouped storm (VmHWM)", f"{memory:.0f} MB", "", "goal < 100 MB")
