"""Rules are found by their gates and regex matchers answered by one prefilter per field (migration 0033): a
shortcut that must decide exactly what testing every matcher of every rule decides, and that, when it is stale,
may only ever let an alert be paged."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from psycopg.types.json import Jsonb

from tests.sql.test_hygiene import T, raise_alert, silence, triggers

# Matcher lists of every shape a gate or a prefilter treats apart
MATCHERS = [
    [{"field": "alert_type", "op": "=", "value": "disk_full"}],
    [{"field": "labels.env", "op": "=", "value": ""}],  # an equality with '' opens no gate: an absent label
    [{"field": "labels.env", "op": "!=", "value": "prod"}],
    [{"field": "labels.service", "op": "=~", "value": "svc-1-.*"}],  # gate with a literal start
    [{"field": "labels.service", "op": "=~", "value": "svc-12?"}],  # a quantifier takes the last letter back
    [{"field": "labels.service", "op": "=~", "value": "ab+c"}],
    [{"field": "labels.service", "op": "=~", "value": "web|api"}],  # an alternative: no literal start
    [{"field": "labels.service", "op": "=~", "value": "(?i)WEB.*"}],  # case-insensitive: its own prefilter
    [{"field": "labels.service", "op": "=~", "value": ".*"}],  # matches an absent label too
    [{"field": "labels.service", "op": "!~", "value": "svc-.*"}],
    [{"field": "details.region", "op": "=~", "value": "eu-[a-z]+-1"}],
    [{"field": "labels.env", "op": "=", "value": "prod"}, {"field": "labels.service", "op": "=~", "value": "api.*"}],
    [{"field": "labels.service", "op": "=~", "value": "x" * 40 + ".*"}],  # a literal start longer than 30
    [{"field": "labels.note", "op": "=", "value": "n" * 250}],  # an equality longer than a gate keeps
]

LABELS = [
    {},
    {"env": "prod"},
    {"env": "prod", "service": "api-gateway"},
    {"env": "staging", "service": "svc-1-db"},
    {"service": "svc-1"},
    {"service": "svc-12"},
    {"service": "svc-123"},
    {"service": "abbbc"},
    {"service": "ac"},
    {"service": "web"},
    {"service": "Web-frontend"},
    {"service": "x" * 40 + "tail"},
    {"service": "x" * 39},
    {"note": "n" * 250},
    {"note": "n" * 249 + "m"},
]


def exact_matches(conn, alert_id: int) -> set[int]:
    """The silences whose matchers the alert meets, every matcher tested, no gate and no prefilter."""
    return {row[0] for row in conn.execute(
        "SELECT s.id FROM monitoring_silences AS s, monitoring_alerts AS a "
        "WHERE a.id = %s AND s.expired_at IS NULL AND NOT EXISTS (SELECT FROM _monitoring_failed_matchers(a, s.matchers))",
        (alert_id,)).fetchall()}


def held_by(conn, alert_id: int) -> set[int]:
    return {row[0] for row in conn.execute(
        "SELECT cause_id FROM monitoring_notification_holds WHERE alert_id = %s AND reason = 'silence'", (alert_id,))}


def test_gates_and_prefilters_hold_exactly_the_alerts_every_matcher_would(conn):
    silences = [silence(conn, matchers) for matchers in MATCHERS]
    held_somewhere = set()
    for number, (labels, region) in enumerate(itertools.product(LABELS, ["", "eu-west-1", "us-east-1"])):
        details = {"labels": labels} | ({"region": region} if region else {})
        alert_type = "disk_full" if number % 5 == 0 else "api_error"
        alert = raise_alert(conn, alert_type, details=details, dedup=f"a{number}")
        assert held_by(conn, alert) == exact_matches(conn, alert), (labels, region)
        held_somewhere |= held_by(conn, alert)
    assert held_somewhere == set(silences), "every shape of matcher held some alert: the comparison saw each"


def test_a_storm_in_one_statement_is_held_exactly_as_alert_by_alert(conn):
    for matchers in MATCHERS:
        silence(conn, matchers)
    rows = [(f"s{i}", Jsonb({"labels": labels})) for i, labels in enumerate(LABELS)]
    ids = [row[0] for row in conn.execute(
        "INSERT INTO monitoring_alerts (alert_type, severity, title, dedup_key, details, created_at) "
        "SELECT 'api_error', 'critical', 'storm', d.key, d.details, %s FROM unnest(%s::text[], %s::jsonb[]) AS d (key, details) "
        "RETURNING id", (T, [r[0] for r in rows], [r[1] for r in rows])).fetchall()]
    assert any(held_by(conn, alert) for alert in ids)
    for alert in ids:
        assert held_by(conn, alert) == exact_matches(conn, alert)


@pytest.mark.parametrize(("regex", "start"), [
    ("svc-1-.*", "svc-1-"),
    ("svc-12?", "svc-1"),
    ("ab*", "a"),
    ("ab+c", "a"),
    ("ab{2}", "a"),
    (r"host\.example", "host"),
    ("db[0-9]+", "db"),
    ("web|api", ""),
    ("(?i)web", ""),
    (".*-prod", ""),
    ("x" * 40, "x" * 30),
])
def test_the_literal_start_of_a_regex_is_what_every_value_it_matches_begins_with(conn, regex, start):
    assert conn.execute("SELECT _monitoring_regex_literal_start(%s)", (regex,)).fetchone() == (start,)


def test_a_gate_is_set_from_the_matchers_whatever_the_statement_says(connect):
    admin = connect("monitoring_admin")
    silence_id = admin.execute(
        "INSERT INTO monitoring_silences (matchers, ends_at, comment, gate) "
        "VALUES (%s, now() + interval '1 hour', 'x', 'labels.env=anything') RETURNING id",
        (Jsonb([{"field": "alert_type", "op": "=", "value": "disk_full"}]),)).fetchone()[0]
    assert admin.execute("SELECT gate FROM monitoring_silences WHERE id = %s", (silence_id,)).fetchone() == ("alert_type=disk_full",)
    rule = admin.execute(
        "INSERT INTO monitoring_inhibit_rules (name, source_matchers, target_matchers, target_gate) "
        "VALUES ('r', %s, %s, '*') RETURNING source_gate, target_gate",
        (Jsonb([{"field": "labels.role", "op": "=~", "value": "control-plane|cp"}]),
         Jsonb([{"field": "severity", "op": "=", "value": "warning"}]))).fetchone()
    assert rule == ("labels.role~", "severity=warning")


def test_a_prefilter_per_field_stands_for_the_regexes_of_every_rule_in_force(conn):
    silence(conn, [{"field": "labels.service", "op": "=~", "value": "svc-1-.*"}])
    silence(conn, [{"field": "labels.service", "op": "=~", "value": "(?i)web"}])
    conn.execute("INSERT INTO monitoring_group_rules (name, matchers, group_by) VALUES ('g', %s, '{alert_type}')",
                 (Jsonb([{"field": "labels.service", "op": "=~", "value": "api.*"}]),))
    assert conn.execute("SELECT matcher_key, regexes, start_lengths, pattern FROM monitoring_regex_prefilters ORDER BY 1").fetchall() == [
        ("(?i)labels.service", 1, [0], "(?i)^(?:(?:web))$"),
        ("labels.service", 2, [3, 6], "^(?:(?:api.*)|(?:svc-1-.*))$"),
    ]
    conn.execute("UPDATE monitoring_group_rules SET enabled = false")
    assert conn.execute("SELECT matcher_key, regexes FROM monitoring_regex_prefilters ORDER BY 1").fetchall() == [
        ("(?i)labels.service", 1), ("labels.service", 1)]


def test_an_alternation_too_complex_to_compile_whole_leaves_its_regexes_tested_one_by_one(conn):
    # each compiles alone (a silence's check); twelve together exceed what PostgreSQL's regex engine takes
    conn.execute("INSERT INTO monitoring_silences (matchers, starts_at, ends_at, comment) "
                 "SELECT jsonb_build_array(jsonb_build_object('field', 'labels.host', 'op', '=~', "
                 "'value', 'h' || i || '-(\\w{1,100}\\.){1,100}')), %s, %s, 'hosts' FROM generate_series(1, 12) AS i",
                 (T - dt.timedelta(minutes=5), T + dt.timedelta(hours=1)))
    assert conn.execute("SELECT regexes, pattern FROM monitoring_regex_prefilters").fetchone() == (12, None)
    alert = raise_alert(conn, details={"labels": {"host": "h7-abc.def."}}, dedup="h7")
    assert held_by(conn, alert) == exact_matches(conn, alert) and len(held_by(conn, alert)) == 1
    assert held_by(conn, raise_alert(conn, details={"labels": {"host": "db1"}}, dedup="db1")) == set()


def test_a_rule_saved_with_triggers_off_is_tested_against_every_alert_and_a_stale_prefilter_only_pages(conn, connect):
    """After a restore or an import with triggers off, gates and prefilters may not match the rules. A rule saved so
    has the gate `*`: it is tested against every alert, so it holds what it matches (and one that cannot be evaluated
    is still found). A prefilter that misses a rule's regex can only let an alert be paged, never hold one it does
    not match; monitoring_rebuild_rule_gates (run by migrate) makes both current."""
    silence(conn, [{"field": "labels.service", "op": "=~", "value": "svc-.*"}])
    conn.execute("SET session_replication_role = replica")  # what a restore with triggers off does
    conn.execute("DELETE FROM monitoring_regex_prefilters")
    conn.execute("INSERT INTO monitoring_silences (matchers, starts_at, ends_at, comment) VALUES (%s, %s, %s, 'imported')",
                 (Jsonb([{"field": "alert_type", "op": "=", "value": "disk_full"}]), T - dt.timedelta(minutes=5),
                  T + dt.timedelta(hours=1)))
    conn.execute("SET session_replication_role = DEFAULT")
    assert conn.execute("SELECT gate FROM monitoring_silences WHERE comment = 'imported'").fetchone() == ("*",)
    first = raise_alert(conn, details={"labels": {"service": "svc-a"}}, dedup="a")
    disk = raise_alert(conn, "disk_full", dedup="disk")
    assert set(triggers(conn, first).values()) == {"pending"} and set(triggers(conn, disk).values()) == {"held"}
    admin = connect("monitoring_admin")
    assert admin.execute("SELECT monitoring_rebuild_rule_gates()").fetchone() == (1,)
    assert conn.execute("SELECT gate FROM monitoring_silences WHERE comment = 'imported'").fetchone() == ("alert_type=disk_full",)
    again = raise_alert(conn, details={"labels": {"service": "svc-b"}}, dedup="b")
    disk_again = raise_alert(conn, "disk_full", dedup="disk2")
    assert set(triggers(conn, again).values()) == {"held"} and set(triggers(conn, disk_again).values()) == {"held"}


def test_inhibit_rules_are_found_by_their_gates_and_decide_as_before(conn):
    """A regex source and target: the alert that opens no source gate is no source, the target that opens the
    target gate is held by the source of its cluster, and not by another cluster's."""
    conn.execute("INSERT INTO monitoring_inhibit_rules (name, source_matchers, target_matchers, equal) VALUES "
                 "('cp', %s, %s, '{labels.cluster}')",
                 (Jsonb([{"field": "labels.role", "op": "=~", "value": "control-plane|cp"}]),
                  Jsonb([{"field": "labels.team", "op": "=~", "value": "web.*"}])))
    raise_alert(conn, "node_down", details={"labels": {"cluster": "eu1", "role": "cp"}}, dedup="cp-eu1")
    worker = raise_alert(conn, "node_down", details={"labels": {"cluster": "eu1", "role": "worker"}}, dedup="w-eu1")
    held = raise_alert(conn, details={"labels": {"cluster": "eu1", "team": "webshop"}}, dedup="web-eu1")
    free = raise_alert(conn, details={"labels": {"cluster": "us1", "team": "webshop"}}, dedup="web-us1")
    other_team = raise_alert(conn, details={"labels": {"cluster": "eu1", "team": "data"}}, dedup="data-eu1")
    assert conn.execute("SELECT count(*) FROM monitoring_inhibit_sources").fetchone() == (1,)
    assert set(triggers(conn, held).values()) == {"held"}
    for alert in (worker, free, other_team):
        assert set(triggers(conn, alert).values()) == {"pending"}


def test_setting_the_gates_of_a_rule_that_cannot_be_evaluated_works_and_the_rule_is_then_taken_out_of_force(conn):
    """migrate runs monitoring_rebuild_rule_gates: a restored silence whose regex cannot be evaluated must not stop
    it; the first alert it would have failed pages and takes it out of force."""
    conn.execute("SET session_replication_role = replica")
    conn.execute("INSERT INTO monitoring_silences (matchers, ends_at, comment) "
                 "VALUES (%s, now() + interval '1 hour', 'restored')",
                 (Jsonb([{"field": "alert_type", "op": "=~", "value": "(?s)disk_full"}]),))
    conn.execute("SET session_replication_role = DEFAULT")
    assert conn.execute("SELECT monitoring_rebuild_rule_gates()").fetchone() == (1,)
    assert conn.execute("SELECT gate FROM monitoring_silences").fetchone() == ("alert_type~",)
    # a rule is taken out of force while it is in force by the wall clock
    disk = raise_alert(conn, "disk_full", dedup="disk", at=dt.datetime.now(dt.UTC))
    assert set(triggers(conn, disk).values()) == {"pending"}
    assert conn.execute("SELECT expired_at IS NOT NULL FROM monitoring_silences").fetchone() == (True,)
