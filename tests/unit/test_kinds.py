"""The registry of provider kinds (dispatcher/providers/kinds.py) is the one place a kind is declared: its
default channel's variables, a channel's secrets and settings, what it sends, its documented rate. These tests
hold the declarations to what the code does and the docs say."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from dispatcher.providers import KINDS, Channel, channel_provider, providers_from_env
from dispatcher.providers.base import Delivery, Unconfigured
from dispatcher.settings import DEFAULT_PACING, parse_pacing
from tests.memory import stored_alert

DOCS = Path(__file__).resolve().parents[2] / "docs" / "integrations"
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
# a working value for every key of every kind
SAMPLE = {
    "routing_key": "R0UTINGKEY0000000000000000000000", "events_url": "https://events.eu.pagerduty.com/v2/enqueue",
    "api_key": "00000000-0000-0000-0000-000000000000", "api_url": "https://api.eu.opsgenie.com",
    "webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX", "label": "#payments",
    "dsn": "https://0123456789abcdef@o1.ingest.sentry.io/42", "url": "https://hooks.example.com/pgalert",
    "signing_secret": SECRET, "smtp_url": "smtps://smtp.example.com:465", "from": "pgalert <alerts@example.com>",
    "to": "oncall@example.com", "username": "alerts@example.com", "password": "hunter22",
    "auth_token": "0123456789abcdef0123456789abcdef", "account_sid": "AC" + "0" * 32, "from_number": "+14155550100",
    "public_url": "https://pgalert.example.com", "server_url": "https://ntfy.example.com",
    "action_key": "an-action-key-shared-with-pgalert-serve",
    "token": "tk_0123456789abcdefghijklmnopqrs",
}
# the kinds that carry messages to a person's contact method, and a method of theirs
CONTACT = {"twilio": {"kind": "sms", "address": "+14155550199"}, "ntfy": {"kind": "push", "address": "oncall-alice"}}
HOST = {"webhook": "hooks.example.com", "email": "smtp.example.com", "ntfy": "ntfy.example.com"}


def sample(kind: str, key: str) -> str:
    if kind == "jsm" and key == "api_url":
        return "https://api.atlassian.com/jsm/ops/integration"
    if kind == "twilio" and key == "api_url":
        return "https://api.twilio.com"
    if kind == "teams" and key == "webhook_url":
        return "https://prod-00.westus.logic.azure.com/workflows/x/triggers/manual/paths/invoke?sig=y"
    return SAMPLE[key]


def default_env(kind: str) -> dict[str, str]:
    declared = KINDS[kind]
    return {variable: sample(kind, key) for key, variable in {**declared.secrets, **declared.settings}.items()
            if variable and not (kind == "sentry" and key == "webhook_url")}


def as_channel(kind: str) -> tuple[Channel, dict[str, str]]:
    declared = KINDS[kind]
    secrets = {key: f"env:PAYMENTS_{kind.upper()}_{key.upper()}" for key in declared.secrets
               if not (kind == "sentry" and key == "webhook_url")}
    env = {reference.removeprefix("env:"): sample(kind, key) for key, reference in secrets.items()}
    grant = f"@{HOST[kind]}" if kind in HOST else ""
    env["PGALERT_CHANNEL_SECRETS"] = " ".join(f"{name}={kind}{grant}" for name in env)
    settings = {key: sample(kind, key) for key in declared.settings}
    return Channel(f"{kind}-payments", kind, settings, secrets), env


@pytest.mark.parametrize("kind", KINDS)
def test_a_kinds_default_channel_and_a_channel_of_it_are_built_by_the_same_declaration(kind):
    default = providers_from_env(default_env(kind))[kind]
    channel, env = as_channel(kind)
    other = channel_provider(channel, env)
    assert not isinstance(default, Unconfigured), default
    assert not isinstance(other, Unconfigured), other.reason
    assert type(default) is type(other) and other.name == f"{kind}-payments"


@pytest.mark.parametrize("kind", KINDS)
def test_a_kind_unset_is_skipped_naming_the_variable_that_configures_it(kind):
    reason = providers_from_env({})[kind].reason
    variables = [{**KINDS[kind].secrets, **KINDS[kind].settings}[key] for key in KINDS[kind].configured_by]
    assert all(variable in reason for variable in variables) and reason.endswith("is set" if len(variables) > 1
                                                                                  else "is not set")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("action", ["trigger", "acknowledge", "resolve", "notify"])
def test_a_kind_sends_exactly_the_actions_it_declares(kind, action):
    provider = providers_from_env(default_env(kind))[kind]
    context = {"contact": CONTACT[kind], "reason": "you are on call"} if kind in CONTACT else {}
    delivery = Delivery(1, 1, kind, action, None, context, "pgalert-1", stored_alert(1))
    request = provider.build(delivery)
    assert (request is not None) == (action in KINDS[kind].actions)


def test_the_default_pacing_is_each_kinds_declared_rate():
    assert set(parse_pacing(DEFAULT_PACING)) == {name for name, kind in KINDS.items() if kind.pace}
    assert parse_pacing(DEFAULT_PACING)["slack"].interval == 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_a_page_naming_its_variables_secrets_and_settings(kind):
    page = DOCS / f"{kind}.md"
    assert page.exists(), f"docs/integrations/{kind}.md is missing"
    text = page.read_text()
    declared = KINDS[kind]
    missing = [name for name in (*declared.variables(), *declared.secrets, *declared.settings)
               if f"`{name}`" not in text]
    assert not missing, f"docs/integrations/{kind}.md does not name {missing}"
