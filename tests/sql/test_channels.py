"""Channels as data: a row of monitoring_providers per Slack channel, PagerDuty service or webhook; routes point at
channels, follow-ups go to the channel that got the trigger, and a secret is only ever named."""

from __future__ import annotations

import re

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.helpers import SEED_CRITICAL, TWO_TEAMS


def triggers(conn, alert_id):
    return sorted(conn.execute("SELECT provider FROM monitoring_deliveries WHERE alert_id = %s AND action = 'trigger'",
                               (alert_id,)).fetchall())


def test_a_new_channel_takes_its_kinds_actions_and_pager_role(conn):
    conn.execute(TWO_TEAMS)
    assert conn.execute("SELECT provider, kind, actions, is_pager FROM monitoring_providers "
                        "WHERE provider LIKE '%%_payments' ORDER BY provider").fetchall() == [
        ("pagerduty_payments", "pagerduty", ["trigger", "acknowledge", "resolve"], True),
        ("slack_payments", "slack", ["trigger", "acknowledge", "resolve", "notify"], False),
    ]


def test_routes_point_at_channels_and_everything_else_keeps_the_defaults(conn):
    conn.execute(TWO_TEAMS)
    conn.execute(SEED_CRITICAL)
    payment = conn.execute("SELECT max(id) FROM monitoring_alerts").fetchone()[0]
    assert triggers(conn, payment) == [("pagerduty_payments",), ("slack_payments",)]
    other = conn.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down')").fetchone()[0]
    assert triggers(conn, other) == [("pagerduty",), ("sentry",), ("slack",)]


def test_acknowledge_and_resolve_go_to_the_channel_that_got_the_trigger_even_after_the_routes_changed(conn):
    conn.execute(TWO_TEAMS)
    conn.execute(SEED_CRITICAL)
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', completed_at = now(), attempts = 1")
    conn.execute("DELETE FROM monitoring_routes WHERE alert_type = 'payment_failure'")
    conn.execute("SELECT monitoring_acknowledge_alert(1, 'alice')")
    assert conn.execute("SELECT provider FROM monitoring_deliveries WHERE action = 'acknowledge' ORDER BY provider"
                        ).fetchall() == [("pagerduty_payments",), ("slack_payments",)]


def test_a_responders_acknowledge_is_not_echoed_to_any_channel_of_the_kind_it_came_from(conn):
    conn.execute(TWO_TEAMS)
    conn.execute(SEED_CRITICAL)
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', completed_at = now(), attempts = 1")
    conn.execute("SELECT _monitoring_acknowledge(1, 'alice', NULL, now(), 'pagerduty')")
    assert conn.execute("SELECT provider FROM monitoring_deliveries WHERE action = 'acknowledge'").fetchall() == \
        [("slack_payments",)]


@pytest.mark.parametrize(("row", "message"), [
    # a secret itself, in place of its name
    ({"provider": "pd_x", "kind": "pagerduty", "secret_refs": Jsonb({"routing_key": "0123456789abcdef0123456789abcdef"})},
     "secrets_are_references"),
    ({"provider": "slack_x", "kind": "slack", "secret_refs": Jsonb({"webhook_url": "env:lower_case"})},
     "secrets_are_references"),
    ({"provider": "slack_x", "kind": "slack", "secret_refs": Jsonb({"webhook_url": ["env:A"]})}, "secrets_are_references"),
    ({"provider": "teams_x", "kind": "carrier_pigeon"}, "kind_is_known"),
    ({"provider": "slack_x", "kind": "slack", "settings": Jsonb(["url"])}, "settings_is_an_object"),
    ({"provider": "Slack X", "kind": "slack"}, "provider_name_is_simple"),
    # the password in the URL instead of in secret_refs
    ({"provider": "mail_x", "kind": "email", "settings": Jsonb({"smtp_url": "smtps://alerts:hunter2@smtp.example.com"})},
     "smtp_url_carries_no_credentials"),
])
def test_a_bad_channel_is_refused_with_the_reason(conn, row, message):
    with pytest.raises(psycopg.Error, match=message):
        conn.execute(f"INSERT INTO monitoring_providers ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})",
                     tuple(row.values()))


def test_a_default_channel_is_configured_by_the_environment_alone(conn):
    with pytest.raises(psycopg.Error, match="default_channels_use_the_environment"):
        conn.execute("""UPDATE monitoring_providers SET secret_refs = '{"routing_key": "env:OTHER"}'
                        WHERE provider = 'pagerduty'""")


def test_an_admin_adds_channels_and_routes_and_a_writer_cannot(connect):
    admin, writer = connect("monitoring_admin"), connect("monitoring_writer")
    admin.execute(TWO_TEAMS)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        writer.execute("INSERT INTO monitoring_providers (provider, kind) VALUES ('slack_evil', 'slack')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        writer.execute("UPDATE monitoring_providers SET secret_refs = '{}' WHERE provider = 'slack_payments'")


def test_a_teams_channel_per_team_and_the_default_teams_channel_take_trigger_to_notify(conn):
    conn.execute("""INSERT INTO monitoring_providers (provider, kind, secret_refs)
                    VALUES ('teams_platform', 'teams', '{"webhook_url": "env:TEAMS_WEBHOOK_PLATFORM"}')""")
    assert conn.execute("SELECT provider, actions, is_pager FROM monitoring_providers WHERE kind = 'teams' ORDER BY 1"
                        ).fetchall() == [("teams", ["trigger", "acknowledge", "resolve", "notify"], False),
                                         ("teams_platform", ["trigger", "acknowledge", "resolve", "notify"], False)]


def test_an_email_channel_per_team_and_the_default_email_channel_take_trigger_to_notify(conn):
    conn.execute("""INSERT INTO monitoring_providers (provider, kind, settings, secret_refs)
                    VALUES ('email_platform', 'email', '{"smtp_url": "smtps://smtp.example.com", "from": "a@example.com",
                            "to": ["platform@example.com"], "username": "alerts"}', '{"password": "env:SMTP_PASSWORD"}')""")
    assert conn.execute("SELECT provider, actions, is_pager FROM monitoring_providers WHERE kind = 'email' ORDER BY 1"
                        ).fetchall() == [("email", ["trigger", "acknowledge", "resolve", "notify"], False),
                                         ("email_platform", ["trigger", "acknowledge", "resolve", "notify"], False)]


def test_the_kinds_the_database_accepts_are_the_dispatchers_registry(conn):
    from dispatcher.providers import KINDS

    check = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'kind_is_known'"
        " AND conrelid = 'monitoring_providers'::regclass").fetchone()[0]
    accepted = set(re.findall(r"'(\w+)'::text", check))
    assert accepted == set(KINDS)
