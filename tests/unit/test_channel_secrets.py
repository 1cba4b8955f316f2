"""A database admin writes channels; the operator of the dispatchers' hosts decides which of their secrets a channel
may name and where each may go (#22, 1). Every kind is tried as an admin who wants a secret sent to their server."""

from __future__ import annotations

import base64

import pytest

from dispatcher.providers import Channel, ProviderConfigError, channel_provider, providers_from_env
from dispatcher.providers.base import Delivery, Unconfigured
from dispatcher.providers.webhook import Webhook

GRANTS = "PGALERT_CHANNEL_SECRETS"
SECRET = "the-real-secret-value-9f8e7d"
WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()
EVIL = "collector.attacker.example"

# one working channel of each kind: (its row, the variable it names, the grant that makes it work)
WORKING = {
    "pagerduty": (Channel("c", "pagerduty", {}, {"routing_key": "env:TEAM_SECRET"}), "TEAM_SECRET=pagerduty"),
    "opsgenie": (Channel("c", "opsgenie", {"api_url": "https://api.eu.opsgenie.com"}, {"api_key": "env:TEAM_SECRET"}),
                 "TEAM_SECRET=opsgenie"),
    "jsm": (Channel("c", "jsm", {}, {"api_key": "env:TEAM_SECRET"}), "TEAM_SECRET=jsm"),
    "slack": (Channel("c", "slack", {}, {"webhook_url": "env:TEAM_SECRET"}), "TEAM_SECRET=slack"),
    "teams": (Channel("c", "teams", {}, {"webhook_url": "env:TEAM_SECRET"}), "TEAM_SECRET=teams"),
    "sentry": (Channel("c", "sentry", {}, {"dsn": "env:TEAM_SECRET"}), "TEAM_SECRET=sentry"),
    "webhook": (Channel("c", "webhook", {"url": "https://hooks.team.example/in"}, {"signing_secret": "env:TEAM_SECRET"}),
                "TEAM_SECRET=webhook@hooks.team.example"),
    "email": (Channel("c", "email", {"smtp_url": "smtps://smtp.team.example", "from": "a@team.example",
                                     "to": ["b@team.example"], "username": "a"}, {"password": "env:TEAM_SECRET"}),
              "TEAM_SECRET=email@smtp.team.example"),
}
VALUES = {"slack": "https://hooks.slack.com/services/T1/B1/" + SECRET, "teams": "https://team.example/flow?sig=" + SECRET,
          "sentry": f"https://{SECRET}@o1.ingest.sentry.io/42", "webhook": WHSEC}


def env_for(kind: str, grants: str | None, variable: str = "TEAM_SECRET") -> dict[str, str]:
    env = {variable: VALUES.get(kind, SECRET)}
    if grants is not None:
        env[GRANTS] = grants
    return env


def assert_refused(provider, *fragments: str) -> None:
    assert isinstance(provider, Unconfigured), provider
    for fragment in fragments:
        assert fragment in provider.reason
    assert SECRET not in provider.reason and WHSEC not in provider.reason


@pytest.mark.parametrize("kind", WORKING)
def test_a_channel_works_when_the_operator_allowed_its_variable_for_its_kind(kind):
    channel, grant = WORKING[kind]
    provider = channel_provider(channel, env_for(kind, grant))
    assert not isinstance(provider, Unconfigured), provider.reason
    assert any(SECRET in s or s == WHSEC for s in provider.secrets())


@pytest.mark.parametrize("kind", WORKING)
def test_a_variable_the_operator_did_not_list_is_never_read(kind):
    channel, _ = WORKING[kind]
    assert_refused(channel_provider(channel, env_for(kind, None)), "TEAM_SECRET", GRANTS)
    assert_refused(channel_provider(channel, env_for(kind, "OTHER_SECRET=" + kind)), GRANTS)


@pytest.mark.parametrize("kind", WORKING)
def test_a_variable_allowed_for_another_kind_is_not_this_kinds(kind):
    channel, _ = WORKING[kind]
    other = "slack" if kind != "slack" else "pagerduty"
    assert_refused(channel_provider(channel, env_for(kind, f"TEAM_SECRET={other}")), f"{other} channels only")


OWN = ["DATABASE_URL", "PGPASSWORD", "PGALERT_WEBHOOK_SECRET", "PAGERDUTY_INTEGRATION_KEY", "OPSGENIE_API_KEY",
       "JSM_API_KEY", "SLACK_WEBHOOK_URL", "SLACK_SIGNING_SECRET", "SENTRY_DSN", "SENTRY_WEBHOOK_URL", "TEAMS_WEBHOOK_URL",
       "EMAIL_SMTP_PASSWORD", "PRODUCTION_URL", "OPSGENIE_WEBHOOK_TOKEN", "PAGERDUTY_WEBHOOK_SECRETS"]


@pytest.mark.parametrize("variable", OWN)
@pytest.mark.parametrize("kind", WORKING)
def test_the_dispatchers_own_variables_are_no_channels_even_if_listed(kind, variable):
    channel, _ = WORKING[kind]
    refs = {key: f"env:{variable}" for key in channel.secret_refs}
    attack = Channel(channel.name, kind, channel.settings, refs)
    assert_refused(channel_provider(attack, env_for(kind, None, variable)), variable, "dispatcher's own")
    with pytest.raises(ProviderConfigError, match=f"lists {variable}, which no channel may use"):
        providers_from_env({GRANTS: f"{variable}={kind}"})


@pytest.mark.parametrize(("kind", "setting", "url"), [
    ("pagerduty", "events_url", f"https://{EVIL}/v2/enqueue"),
    ("opsgenie", "api_url", f"https://{EVIL}"),
    ("jsm", "api_url", f"https://{EVIL}/jsm/ops/integration"),
    ("webhook", "url", f"https://{EVIL}/in"),
    ("email", "smtp_url", f"smtps://{EVIL}:465"),
])
def test_a_secret_goes_only_to_its_vendor_or_the_hosts_the_operator_listed(kind, setting, url):
    channel, grant = WORKING[kind]
    moved = Channel(channel.name, kind, {**channel.settings, setting: url}, channel.secret_refs)
    assert_refused(channel_provider(moved, env_for(kind, grant)), setting, EVIL, "TEAM_SECRET")
    # the operator can allow the host, for that variable only
    assert not isinstance(channel_provider(moved, env_for(kind, f"TEAM_SECRET={kind}@other.example|{EVIL}")), Unconfigured)


def test_pagerdutys_eu_endpoint_is_the_vendors_own():
    channel = Channel("c", "pagerduty", {"events_url": "https://events.eu.pagerduty.com/v2/enqueue"},
                      {"routing_key": "env:TEAM_SECRET"})
    assert channel_provider(channel, env_for("pagerduty", "TEAM_SECRET=pagerduty")).events_url.startswith(
        "https://events.eu.pagerduty.com")


@pytest.mark.parametrize("spec", ["TEAM_SECRET", "TEAM_SECRET=pigeon", "team_secret=slack", "TEAM_SECRET=email@smtp/x",
                                  "A=slack, A=teams"])
def test_a_mistake_in_the_operators_list_stops_the_start(spec):
    with pytest.raises(ProviderConfigError, match=GRANTS):
        providers_from_env({GRANTS: spec})


@pytest.mark.parametrize("secret", [
    base64.b64encode(bytes(range(32))).decode(),  # base64 without the documented whsec_
    "whsec_" + base64.b64encode(b"short").decode(),  # fewer than 24 bytes: guessable offline
    "whsec_not base64 at all!",
    "whsec_" + base64.b64encode(bytes(65)).decode(),
])
def test_a_channels_webhook_secret_is_a_standard_webhooks_secret_of_24_to_64_bytes(secret):
    channel, grant = WORKING["webhook"]
    provider = channel_provider(channel, {"TEAM_SECRET": secret, GRANTS: grant})
    assert isinstance(provider, Unconfigured) and "signing_secret (TEAM_SECRET)" in provider.reason
    assert secret not in provider.reason


@pytest.mark.parametrize("value", ["not a url", "https://o1.ingest.sentry.io/no-key", "https://key@o1.sentry.io/p"])
def test_a_channels_bad_secret_is_named_by_its_setting_and_its_variable_never_by_a_default_one(value):
    """A Sentry channel's error said SENTRY_WEBHOOK_URL, a variable the channel never named (#22, 16)."""
    channel = Channel("c", "sentry", {}, {"webhook_url": "env:SENTRY_PAYMENTS"})
    provider = channel_provider(channel, {"SENTRY_PAYMENTS": value, GRANTS: "SENTRY_PAYMENTS=sentry"})
    assert isinstance(provider, Unconfigured) and "webhook_url (SENTRY_PAYMENTS)" in provider.reason, provider
    assert "SENTRY_WEBHOOK_URL" not in provider.reason and "SENTRY_DSN" not in provider.reason


def test_only_the_default_webhook_keeps_the_legacy_signature_keyed_by_the_raw_secret():
    delivery = Delivery(1, 1, "c", "trigger", "", {}, "pgalert-1", {"id": 1, "title": "t"})
    channel, grant = WORKING["webhook"]
    headers = channel_provider(channel, env_for("webhook", grant)).build(delivery).headers
    assert "webhook-signature" in headers and "X-Pgalert-Signature" not in headers
    assert "X-Pgalert-Signature" in Webhook("https://hooks.example.com/x", WHSEC).build(delivery).headers


def test_the_default_webhook_secret_needs_the_whsec_prefix():
    with pytest.raises(ProviderConfigError, match="PGALERT_WEBHOOK_SECRET must be a Standard Webhooks secret"):
        providers_from_env({"PGALERT_WEBHOOK_URL": "https://hooks.example.com/x",
                            "PGALERT_WEBHOOK_SECRET": base64.b64encode(bytes(range(32))).decode()})
