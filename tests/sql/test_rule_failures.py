"""No saved rule stops an alert or its page (#22, 2 and 6).

Every matcher is checked when saved in exactly the form it is evaluated in; a rule that still cannot be evaluated
(saved by an older release, restored with triggers off, a time zone gone from the tz database) is taken out of
force at the first INSERT it would have failed, the alert pages, and pgalert raises an alert about the rule."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.helpers import SEED_CRITICAL

PROD = [{"field": "labels.env", "op": "=~", "value": "(?i)prod"}]
SEED = [{"field": "alert_type", "op": "=", "value": "payment_failure"}]

# a plain INSERT of each kind of rule, as the README shows them, with {m} for its matchers
RULES = {
    "silence": "INSERT INTO monitoring_silences (matchers, ends_at, comment) VALUES ({m}, now() + interval '1 hour', 'x')",
    "maintenance window": "INSERT INTO monitoring_maintenance_windows (name, matchers, starts_at, ends_at) "
                          "VALUES ('w', {m}, now() - interval '1 minute', now() + interval '1 hour')",
    "inhibit rule": "INSERT INTO monitoring_inhibit_rules (name, source_matchers, target_matchers) "
                    "VALUES ('i', '[{{\"field\": \"alert_type\", \"op\": \"=\", \"value\": \"db_down\"}}]', {m})",
    "group rule": "INSERT INTO monitoring_group_rules (name, matchers) VALUES ('g', {m})",
    "flap rule": "INSERT INTO monitoring_flap_rules (name, matchers) VALUES ('f', {m})",
}
TABLES = {"silence": "monitoring_silences", "maintenance window": "monitoring_maintenance_windows",
          "inhibit rule": "monitoring_inhibit_rules", "group rule": "monitoring_group_rules",
          "flap rule": "monitoring_flap_rules"}


def save(conn, kind, matchers):
    conn.execute(RULES[kind].format(m="%s"), (Jsonb(matchers),))


def save_unchecked(conn, kind, matchers):
    """As a restore with triggers off (or an older release) would leave it: the save check never ran."""
    conn.execute("SET session_replication_role = replica")
    try:
        save(conn, kind, matchers)
    finally:
        conn.execute("SET session_replication_role = DEFAULT")


def seed_triggers(conn):
    return dict(conn.execute("SELECT d.provider, d.status FROM monitoring_deliveries AS d JOIN monitoring_alerts AS a "
                             "ON a.id = d.alert_id WHERE a.alert_type = 'payment_failure' AND d.action = 'trigger'"))


def rule_alerts(conn):
    return conn.execute("SELECT severity, details FROM monitoring_alerts WHERE alert_type = 'pgalert_rule_disabled' "
                        "ORDER BY id").fetchall()


@pytest.mark.parametrize("kind", RULES)
@pytest.mark.parametrize("regex", [
    "(?s)prod",  # compiles alone; an embedded option is refused anywhere but the start of ^(?:...)$
    "***=prod",  # a director compiles alone, not after ^(?:
    "x)|(.*",  # compiles only inside ^(?:...)$, where it would escape the anchors and match everything
    r"(a+)\1",  # a back-reference: the one construct whose matching time can explode
    "a" * 1001,
])
def test_every_kind_of_rule_refuses_a_regex_that_cannot_be_evaluated_as_saved(connect, kind, regex):
    admin = connect("monitoring_admin")
    with pytest.raises(psycopg.errors.InvalidRegularExpression):
        save(admin, kind, [{"field": "labels.env", "op": "=~", "value": regex}])
    assert admin.execute(f"SELECT count(*) FROM {TABLES[kind]}").fetchone() == (0,)


@pytest.mark.parametrize("kind", RULES)
def test_an_admin_saves_every_kind_of_rule_with_the_readmes_plain_insert(connect, kind):
    admin = connect("monitoring_admin")
    save(admin, kind, PROD)
    assert admin.execute(f"SELECT count(*) FROM {TABLES[kind]}").fetchone() == (1,)


def test_alertmanagers_case_insensitive_flag_works_as_it_does_there(conn):
    conn.execute("SELECT monitoring_create_silence(%s, now() + interval '1 hour', 'x')", (Jsonb(PROD),))
    for env, held in (("PROD", True), ("prod", True), ("Production", False), ("preprod", False)):
        alert = conn.execute("SELECT monitoring_raise_alert('api_down', 'critical', 't', p_dedup_key => %s, "
                             "p_details => %s)", (env, Jsonb({"labels": {"env": env}}))).fetchone()[0]
        statuses = {s for (s,) in conn.execute("SELECT status FROM monitoring_deliveries WHERE alert_id = %s", (alert,))}
        assert statuses == ({"held"} if held else {"pending"}), env


@pytest.mark.parametrize("kind", RULES)
def test_a_rule_that_cannot_be_evaluated_is_taken_out_of_force_and_the_alert_pages(connect, kind):
    conn = connect()
    save_unchecked(conn, kind, [{"field": "alert_type", "op": "=~", "value": "(?s)payment_failure"}])
    writer = connect("monitoring_writer")
    # an open db_down is the inhibit rule's source: only then are its target matchers evaluated
    writer.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message) VALUES ('db_down', 'critical', 'x', 'y')")
    writer.execute(SEED_CRITICAL)  # the seed statement, verbatim, as an app
    assert seed_triggers(conn) == {"pagerduty": "pending", "slack": "pending", "sentry": "pending"}
    assert conn.execute(f"SELECT count(*) FROM {TABLES[kind]} WHERE "
                        + ("expired_at IS NULL" if kind == "silence" else "enabled")).fetchone() == (0,)
    [(severity, details)] = rule_alerts(conn)
    assert (severity, details["rule_kind"]) == ("warning", kind) and "(?s)" in details["error"]
    # and it is notified like any alert, once
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries AS d JOIN monitoring_alerts AS a ON a.id = d.alert_id "
                        "WHERE a.alert_type = 'pgalert_rule_disabled' AND d.status = 'pending'").fetchone()[0] >= 1
    writer.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message) VALUES ('disk_full', 'critical', 'x', 'y')")
    assert len(rule_alerts(conn)) == 1


def test_the_rules_that_work_keep_working_beside_a_broken_one(conn):
    conn.execute("SELECT monitoring_create_silence(%s, now() + interval '1 hour', 'deploy')", (Jsonb(SEED),))
    save_unchecked(conn, "inhibit rule", [{"field": "alert_type", "op": "=~", "value": "***=x"}])
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message) VALUES ('db_down', 'critical', 'x', 'y')")
    conn.execute(SEED_CRITICAL)
    assert set(seed_triggers(conn).values()) == {"held"}  # the good silence still holds
    assert conn.execute("SELECT enabled FROM monitoring_inhibit_rules").fetchone() == (False,)


def test_a_window_whose_time_zone_is_unknown_is_disabled_not_fatal(conn):
    conn.execute("SET session_replication_role = replica")
    conn.execute("INSERT INTO monitoring_maintenance_windows (name, matchers, time_zone, days_of_week, start_time, duration) "
                 "VALUES ('nightly', %s, 'Mars/Olympus_Mons', '{1,2,3,4,5,6,7}', '00:00', '23 hours')", (Jsonb(SEED),))
    conn.execute("SET session_replication_role = DEFAULT")
    conn.execute(SEED_CRITICAL)
    assert set(seed_triggers(conn).values()) == {"pending"}
    assert conn.execute("SELECT enabled FROM monitoring_maintenance_windows").fetchone() == (False,)
    assert rule_alerts(conn)[0][1]["rule_kind"] == "maintenance window"


def test_releasing_holds_survives_the_holding_rule_breaking_after_the_hold(conn):
    conn.execute("INSERT INTO monitoring_maintenance_windows (name, matchers, days_of_week, start_time, duration) "
                 "VALUES ('always', %s, '{1,2,3,4,5,6,7}', '00:00', '1 day')", (Jsonb(SEED),))
    conn.execute(SEED_CRITICAL)
    assert set(seed_triggers(conn).values()) == {"held"}
    conn.execute("SET session_replication_role = replica")
    conn.execute("UPDATE monitoring_maintenance_windows SET time_zone = 'Mars/Olympus_Mons'")
    conn.execute("SET session_replication_role = DEFAULT")
    assert conn.execute("SELECT monitoring_release_holds(now())").fetchone() == (1,)
    assert set(seed_triggers(conn).values()) == {"pending"}
    assert conn.execute("SELECT enabled FROM monitoring_maintenance_windows").fetchone() == (False,)


def test_a_failure_pinned_on_no_rule_still_pages_and_says_so_loudly(conn):
    conn.execute("INSERT INTO monitoring_maintenance_windows (name, matchers, starts_at, ends_at) "
                 "VALUES ('w', %s, now() - interval '1 minute', now() + interval '1 hour')", (Jsonb(SEED),))
    # a fault no saved row explains (here: a function that fails), as a bug or a broken extension would
    conn.execute("""CREATE OR REPLACE FUNCTION _monitoring_window_is_open(p_window monitoring_maintenance_windows,
                    p_at timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$
                    BEGIN RAISE EXCEPTION 'disk on fire'; END $$""")
    conn.execute(SEED_CRITICAL)
    assert set(seed_triggers(conn).values()) == {"pending"}
    [(severity, details)] = rule_alerts(conn)
    assert severity == "critical" and "disk on fire" in details["error"]
    assert conn.execute("SELECT enabled FROM monitoring_maintenance_windows").fetchone() == (True,)


@pytest.mark.parametrize("order", ["db_down first", "api_down first"])
def test_two_alerts_that_inhibit_each_other_in_one_statement_never_hold_each_other_for_ever(conn, order):
    """#22, 5: symmetric inhibit rules and both alerts in one INSERT; and a three-way cycle."""
    for name, source, target in (("db_hides_api", "db_down", "api_down"), ("api_hides_db", "api_down", "db_down")):
        conn.execute("INSERT INTO monitoring_inhibit_rules (name, source_matchers, target_matchers) VALUES (%s, %s, %s)",
                     (name, Jsonb([{"field": "alert_type", "op": "=", "value": source}]),
                      Jsonb([{"field": "alert_type", "op": "=", "value": target}])))
    types = ["db_down", "api_down"] if order == "db_down first" else ["api_down", "db_down"]
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message) "
                 "SELECT t, 'critical', t, '' FROM unnest(%s::text[]) AS t", (types,))
    paged = conn.execute("SELECT a.alert_type FROM monitoring_alerts AS a WHERE EXISTS (SELECT FROM monitoring_deliveries AS d "
                         "WHERE d.alert_id = a.id AND d.provider = 'pagerduty' AND d.status = 'pending')").fetchall()
    # the first of the statement is paged; the other stays held by it, as if raised after it
    assert paged == [(types[0],)]
    assert conn.execute("SELECT count(*) FROM monitoring_notification_holds WHERE released_at IS NULL").fetchone() == (1,)
    # and when the paged one resolves, the held one goes out
    conn.execute("SELECT monitoring_resolve_alert((SELECT id FROM monitoring_alerts WHERE alert_type = %s), 'alice')", (types[0],))
    assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE provider = 'pagerduty' AND action = 'trigger' "
                        "AND status = 'pending'").fetchone() == (2,)


def test_a_three_way_inhibition_cycle_in_one_statement_pages_someone(conn):
    for source, target in (("a_down", "b_down"), ("b_down", "c_down"), ("c_down", "a_down")):
        conn.execute("INSERT INTO monitoring_inhibit_rules (name, source_matchers, target_matchers) VALUES (%s, %s, %s)",
                     (f"{source}_hides_{target}", Jsonb([{"field": "alert_type", "op": "=", "value": source}]),
                      Jsonb([{"field": "alert_type", "op": "=", "value": target}])))
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message) "
                 "SELECT t, 'critical', t, '' FROM unnest('{a_down,b_down,c_down}'::text[]) AS t")
    held = {t for (t,) in conn.execute("SELECT a.alert_type FROM monitoring_notification_holds AS h "
                                       "JOIN monitoring_alerts AS a ON a.id = h.alert_id WHERE h.released_at IS NULL")}
    assert held == {"b_down", "c_down"}  # a_down pages, and holds b_down, which holds c_down: no cycle is left
