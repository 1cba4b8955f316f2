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
                 per_round: int = 100, storms: tuple[int, int] = (2_000, 20_000)) -> None:
    """#26's cases: during a storm, thousands of open alerts and inhibit rules whose source is chosen by a label
    (not by alert_type), with equality matchers, then with regex matchers, then 1,000 silences of regex matchers
    only, then the regex rules and the silences together. Single-row INSERTs whose targets every rule matches (so
    each rule's sources are looked up), alternating in one session with the same INSERTs while nothing is in force;
    each block starts from the same open alerts. Then one-statement storms, with everything in force and with none.

    Statistics are gathered once the rules are saved, as autovacuum does within a minute of so many new rows: the
    planner then looks silences up by their gates (on a table it believes holds eight silences it would not)."""
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

        def put_in_force(rules: bool, silences: bool) -> Callable[[], None]:
            def setup() -> None:
                conn.execute("UPDATE monitoring_inhibit_rules SET enabled = %s WHERE enabled <> %s", (rules, rules))
                if silences:
                    conn.execute("UPDATE monitoring_silences SET expired_at = NULL WHERE expired_at IS NOT NULL")
                else:
                    conn.execute("UPDATE monitoring_silences SET expired_at = now() WHERE expired_at IS NULL")
            return setup

        def compare(metric: str, rules: bool, silences: bool) -> None:
            none_rates, in_force_rates = [], []
            for _ in range(2):  # alternating, so drift on a shared machine hits both
                none_rates.append(rate("none", put_in_force(False, False)))
                in_force_rates.append(rate("in_force", put_in_force(rules, silences)))
            report(metric, f"{sum(in_force_rates) / 2:,.0f}/s",
                   f"none in force {sum(none_rates) / 2:,.0f}/s = {sum(in_force_rates) / sum(none_rates):.2f}",
                   "goal >= 0.7")

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
            conn.execute("ANALYZE monitoring_inhibit_rules, monitoring_inhibit_sources")
            compare(f"INSERT rate, {open_alerts:,} open alerts + 20 label-sourced inhibit rules ({form})", True, False)
        with conn.transaction():
            for i in range(1000):
                conn.execute("SELECT monitoring_create_silence(%s, now() + interval '1 day', 'bench')",
                             (Jsonb([{"field": "labels.service", "op": "=~", "value": f"svc-{i}-.*"}]),))
        conn.execute("ANALYZE monitoring_silences")
        compare("INSERT rate, 1,000 silences of regex matchers only", False, True)
        compare(f"INSERT rate, {open_alerts:,} open alerts + 20 regex inhibit rules + 1,000 regex silences", True, True)

        # storms: one statement, its alerts spread over the 49 clusters whose control planes are up (each rule's
        # sources are looked up for each alert, and none is found: the cost measured is deciding, not the 1,000
        # holds per alert 20 rules with 50 sources each would write), a tenth of them of the service one silence
        # holds
        storm = ("INSERT INTO monitoring_alerts (alert_type, severity, title, dedup_key, details) "
                 "SELECT 'api_error_rate', 'critical', 'Errors', %s || g, jsonb_build_object('labels', "
                 "jsonb_build_object('cluster', 'c' || (1 + g %% 49), 'team', 'web', "
                 "'service', CASE WHEN g %% 10 = 0 THEN 'svc-17-api' ELSE 'checkout' END)) "
                 "FROM generate_series(1, %s) AS g")
        seconds: dict[tuple[int, str], float] = {}
        for size in storms:
            for state, setup in (("none", put_in_force(False, False)), ("in force", put_in_force(True, True)),
                                 ("none again", put_in_force(False, False))):
                setup()
                started = time.perf_counter()
                conn.execute(storm, (f"storm_{size}_{state}_", size))
                seconds[size, state] = time.perf_counter() - started
                conn.execute("DELETE FROM monitoring_alerts WHERE dedup_key LIKE 'storm_%'")
        small, large = storms
        for size in storms:
            none = (seconds[size, "none"] + seconds[size, "none again"]) / 2
            report(f"storm of {size:,} alerts in one INSERT, rules and silences above in force",
                   f"{seconds[size, 'in force']:.2f} s", f"none in force {none:.2f} s = "
                   f"{seconds[size, 'in force'] / none:.2f}x the time", "goal <= 2x")
        report(f"storm growth, {small:,} -> {large:,} alerts, in force",
               f"{seconds[large, 'in force'] / seconds[small, 'in force']:.1f}x the time",
               f"{large // small}x the alerts", f"goal <= {large // small + 1}x")
