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


def run_at_scale(url: str, report: Callable[..., None], open_alerts: int = 5000, rounds: int = 10,
                 per_round: int = 100) -> None:
    """#26's case: during a storm, thousands of open alerts and inhibit rules whose source is chosen by a label
    (not by alert_type), with equality matchers, then with regex matchers, then 1,000 silences of regex matchers
    only. Single-row INSERTs whose targets every rule matches (so each rule's sources are looked up), alternating
    in one session with the same INSERTs while nothing is in force; each block starts from the same open alerts."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, dedup_key, details) "
                     "SELECT 'node_down', 'warning', 'Node down', 'open_' || g, "
                     "jsonb_build_object('labels', jsonb_build_object('cluster', 'c' || (g %% 50), 'role', "
                     "CASE WHEN g %% 100 = 0 THEN 'control-plane' ELSE 'worker' END)) "
                     "FROM generate_series(1, %s) AS g", (open_alerts,))

        def rate(state: str, setup: Callable[[], None]) -> float:
            seconds = 0.0
            for r in range(rounds):
                setup()
                started = time.perf_counter()
                for i in range(per_round):
                    labels = {"labels": {"cluster": "c7", "team": "web"}}
                    conn.execute(INSERT, (f"scale_{state}_{r}_{i}", Jsonb(labels)))
                seconds += time.perf_counter() - started
                conn.execute("DELETE FROM monitoring_alerts WHERE dedup_key LIKE 'scale_%'")
            return rounds * per_round / seconds

        def nothing_in_force() -> None:
            conn.execute("UPDATE monitoring_inhibit_rules SET enabled = false WHERE enabled")
            conn.execute("UPDATE monitoring_silences SET expired_at = now() WHERE expired_at IS NULL")

        def rules_in_force() -> None:
            conn.execute("UPDATE monitoring_silences SET expired_at = now() WHERE expired_at IS NULL")
            conn.execute("UPDATE monitoring_inhibit_rules SET enabled = true WHERE NOT enabled")

        baseline: list[float] = []
        for form, op, source, target in (("equality", "=", "control-plane-{i}", "web"),
                                         ("regex", "=~", "control-plane|cp{i}", "web|team{i}")):
            conn.execute("DELETE FROM monitoring_inhibit_rules")
            with conn.transaction():
                for i in range(20):
                    # "a control plane down hides its cluster's pages"
                    conn.execute("INSERT INTO monitoring_inhibit_rules (name, source_matchers, target_matchers, equal) "
                                 "VALUES (%s, %s, %s, '{labels.cluster}')",
                                 (f"scale_{i}",
                                  Jsonb([{"field": "labels.role", "op": op, "value": source.format(i=i)}]),
                                  Jsonb([{"field": "labels.team", "op": op, "value": target.format(i=i)}])))
            none_rates, rule_rates = [], []
            for _ in range(2):  # alternating, so drift on a shared machine hits both
                none_rates.append(rate("none", nothing_in_force))
                rule_rates.append(rate("rules", rules_in_force))
            baseline += none_rates
            report(f"INSERT rate, {open_alerts:,} open alerts + 20 label-sourced inhibit rules ({form})",
                   f"{sum(rule_rates) / 2:,.0f}/s",
                   f"none in force {sum(none_rates) / 2:,.0f}/s = {sum(rule_rates) / sum(none_rates):.2f}",
                   "goal >= 0.7")
        with conn.transaction():
            for i in range(1000):
                conn.execute("SELECT monitoring_create_silence(%s, now() + interval '1 day', 'bench')",
                             (Jsonb([{"field": "labels.service", "op": "=~", "value": f"svc-{i}-.*"}]),))
        conn.execute("UPDATE monitoring_inhibit_rules SET enabled = false")
        silences = rate("silences", lambda: conn.execute("UPDATE monitoring_silences SET expired_at = NULL"))
        none = sum(baseline) / len(baseline)
        report("INSERT rate, 1,000 silences of regex matchers only", f"{silences:,.0f}/s",
               f"none in force {none:,.0f}/s = {silences / none:.2f}", "goal >= 0.7")
