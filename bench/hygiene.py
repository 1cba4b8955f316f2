"""The cost of notification hygiene on the hot path: the alert INSERT rate with 100 active silences and 20
inhibition rules in force, as a ratio of the same INSERTs with none, alternating in one session.

The silences match nothing the probe inserts (a silence that matches holds the alert, which is cheaper than
routing it): half name another alert type, half test a label and a regex. Every inhibition rule's target matches
every alert and its source is looked up by alert_type among the open alerts, as a rule like "database down
hides API alerts" is.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from psycopg.types.json import Jsonb

INSERT = ("INSERT INTO monitoring_alerts (alert_type, severity, title, message, dedup_key, details) "
          "VALUES ('api_response_degradation', 'warning', 'Insert probe', 'bench', %s, %s)")


def put_hygiene_in_force(conn: psycopg.Connection) -> None:
    with conn.transaction():
        for i in range(100):
            # half name another alert type, as most silences do ("silence the deploy check"); half match on a
            # label and a regex, which every alert has to be tested against
            matchers = ([{"field": "alert_type", "op": "=", "value": f"deploy_check_{i}"}] if i % 2 else
                        [{"field": "labels.env", "op": "=", "value": f"staging-{i}"},
                         {"field": "alert_type", "op": "=~", "value": "api_.*"}])
            conn.execute("SELECT monitoring_create_silence(%s, now() + interval '1 day', 'bench')", (Jsonb(matchers),))
        for i in range(20):
            conn.execute("INSERT INTO monitoring_inhibit_rules (name, source_matchers, target_matchers, equal) "
                         "VALUES (%s, %s, %s, '{labels.env}')",
                         (f"bench_{i}", Jsonb([{"field": "alert_type", "op": "=", "value": f"database_down_{i}"}]),
                          Jsonb([{"field": "alert_type", "op": "=~", "value": "api_.*"}])))


def take_hygiene_out(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("UPDATE monitoring_silences SET expired_at = now() WHERE expired_at IS NULL")
        conn.execute("UPDATE monitoring_inhibit_rules SET enabled = false")


def run(url: str, report: Callable[..., None], rounds: int = 20, per_round: int = 100) -> None:
    seconds = {"none": 0.0, "in force": 0.0}
    with psycopg.connect(url, autocommit=True) as conn:
        put_hygiene_in_force(conn)
        for r in range(rounds):
            for state in ("in force", "none"):  # alternating, so drift on a shared machine hits both
                if state == "in force":
                    conn.execute("UPDATE monitoring_silences SET expired_at = NULL")
                    conn.execute("UPDATE monitoring_inhibit_rules SET enabled = true")
                else:
                    take_hygiene_out(conn)
                started = time.perf_counter()
                for i in range(per_round):
                    conn.execute(INSERT, (f"hygiene_{state}_{r}_{i}", Jsonb({"labels": {"env": "prod"}})))
                seconds[state] += time.perf_counter() - started
                # each round starts from no open alerts, as the other's did
                conn.execute("DELETE FROM monitoring_alerts WHERE dedup_key LIKE 'hygiene_%'")
        held = conn.execute("SELECT count(*) FROM monitoring_notification_holds").fetchone()[0]
    n = rounds * per_round
    with_rate, without = n / seconds["in force"], n / seconds["none"]
    report("INSERT rate, 100 silences + 20 inhibition rules in force", f"{with_rate:,.0f}/s",
           f"none in force {without:,.0f}/s = {with_rate / without:.2f}", "goal >= 0.8")
    assert held == 0, "the probe's alerts match no silence and no source is open: nothing may be held"
