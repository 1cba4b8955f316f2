"""One module per provider; kinds.py declares what each kind takes; this module builds them from the
environment.

Secrets come only from the environment and are never written to the database or a log. A channel (a row of
monitoring_providers beyond the default one of each kind) names its secrets as `env:NAME`; they are read here.

A channel is written by a database admin, who is not the operator of the dispatchers' hosts: a channel may name
only the variables that the operator lists in PGALERT_CHANNEL_SECRETS, each for one kind, and where a setting of
the channel chooses the destination (an events_url, api_url, webhook url or SMTP server) the secret goes only to
the vendor's own hosts or to hosts the operator listed beside it. No channel may name the dispatcher's own
variables (DATABASE_URL, PG*, the default channels' and pgalert serve's secrets), whatever the list says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from dispatcher.providers.base import Provider, Unconfigured
from dispatcher.providers.checks import (
    ProviderConfigError,
    check_smtp_url,
    check_url,
    mail_address,
    plain_http_allowed,
)
from dispatcher.providers.kinds import KINDS, Config, Kind, mail_provider

__all__ = ["KINDS", "PROVIDER_ENV", "Channel", "ProviderConfigError", "all_secrets", "channel_provider",
           "check_smtp_url", "check_url", "mail_address", "mail_provider", "plain_http_allowed",
           "providers_from_env"]

# every kind's default channel's variables
PROVIDER_ENV = {name: kind.variables() for name, kind in KINDS.items()}
CHANNEL_SECRETS_VARIABLE = "PGALERT_CHANNEL_SECRETS"
# the dispatcher's and pgalert serve's own variables: never a channel's, whatever the operator's list says
OWN_VARIABLES = frozenset(
    {"DATABASE_URL", "PRODUCTION_URL", "SLACK_SIGNING_SECRET", "PAGERDUTY_WEBHOOK_SECRETS", "PAGERDUTY_API_TOKEN",
     "OPSGENIE_WEBHOOK_TOKEN"} | {name for names in PROVIDER_ENV.values() for name in names})


def providers_from_env(env: Mapping[str, str]) -> dict[str, Provider]:
    """Every kind's default channel: configured from env, or Unconfigured with the reason its deliveries are
    skipped. A value that is set but wrong stops the start, with what to fix."""
    channel_secret_grants(env)  # a mistake in the operator's list stops the start, with what is wrong
    return {name: _default_provider(kind, env) for name, kind in KINDS.items()}


def _default_provider(kind: Kind, env: Mapping[str, str]) -> Provider:
    keys = {**kind.secrets, **kind.settings}
    values = {key: (env.get(variable) or "").strip() for key, variable in keys.items() if variable}
    if not any(values.get(key) for key in kind.configured_by):
        names = [keys[key] for key in kind.configured_by]
        reason = f"{names[0]} is not set" if len(names) == 1 else f"neither {' nor '.join(names)} is set"
        return Unconfigured(kind.name, reason)
    config = Config(kind.name, kind.name, values, {key: variable for key, variable in keys.items() if variable}, env,
                    default=True)
    provider = kind.build(config)
    for variable, url in config.urls:
        check_url(variable, url, plain_http_allowed(env))
    return provider


def is_own_variable(name: str) -> bool:
    """DATABASE_URL, libpq's PG* and pgalert's PGALERT_*, and every default channel's and serve's secret."""
    return name in OWN_VARIABLES or name.startswith("PG")


@dataclass(frozen=True)
class SecretGrant:
    """The operator allows channels of `kind` to name this variable, sending it to the vendor or `hosts`."""

    kind: str
    hosts: tuple[str, ...] = ()


def channel_secret_grants(env: Mapping[str, str]) -> dict[str, SecretGrant]:
    """PGALERT_CHANNEL_SECRETS: `NAME=KIND[@HOST|HOST...]`, separated by commas or spaces, e.g.
    `PAGERDUTY_KEY_PAYMENTS=pagerduty, SMTP_PASSWORD_PAYMENTS=email@smtp.example.com`."""
    grants: dict[str, SecretGrant] = {}
    for entry in (env.get(CHANNEL_SECRETS_VARIABLE) or "").replace(",", " ").split():
        name, _, grant = entry.partition("=")
        kind, _, hosts = grant.partition("@")
        host_list = tuple(h.strip().lower() for h in hosts.split("|")) if hosts else ()
        if (not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name) or kind not in KINDS
                or not all(re.fullmatch(r"[a-z0-9.:\[\]-]+", h) for h in host_list)):
            raise ProviderConfigError(
                f"{CHANNEL_SECRETS_VARIABLE}: {entry!r} is not NAME=KIND[@HOST|HOST...] with KIND one of "
                f"{', '.join(KINDS)}, e.g. PAGERDUTY_KEY_PAYMENTS=pagerduty")
        if is_own_variable(name):
            raise ProviderConfigError(
                f"{CHANNEL_SECRETS_VARIABLE} lists {name}, which no channel may use: DATABASE_URL, PG*, PGALERT_* "
                "and the default channels' and pgalert serve's variables stay the dispatcher's own")
        if name in grants:
            raise ProviderConfigError(f"{CHANNEL_SECRETS_VARIABLE} lists {name} twice")
        grants[name] = SecretGrant(kind, host_list)
    return grants


def _granted_secret(kind: str, key: str, variable: str, grants: Mapping[str, SecretGrant]) -> SecretGrant:
    if is_own_variable(variable):
        raise ProviderConfigError(f"{key} names {variable}, which is the dispatcher's own and no channel's")
    grant = grants.get(variable)
    if grant is None:
        raise ProviderConfigError(
            f"{key} names {variable}, which the dispatchers' operator has not allowed: add "
            f"{variable}={kind} to {CHANNEL_SECRETS_VARIABLE} in their environment")
    if grant.kind != kind:
        raise ProviderConfigError(f"{key} names {variable}, which {CHANNEL_SECRETS_VARIABLE} allows for "
                                  f"{grant.kind} channels only")
    return grant


def _check_destination(kind: Kind, url: str, variables: Mapping[str, SecretGrant]) -> None:
    """A secret chosen by reference goes only where the operator let it: its vendor's hosts or those listed."""
    host = (urlsplit(url).hostname or "").lower()
    for variable, grant in variables.items():
        allowed = kind.vendor_hosts + grant.hosts
        if host not in allowed:
            raise ProviderConfigError(
                f"{kind.destination} points at {host}, where {variable} may not go: "
                + (f"{CHANNEL_SECRETS_VARIABLE} allows it to {', '.join(allowed)} only" if allowed else
                   f"list the host in {CHANNEL_SECRETS_VARIABLE}, e.g. {variable}={kind.name}@{host}"))


@dataclass(frozen=True)
class Channel:
    """A row of monitoring_providers that is not a kind's default channel."""

    name: str
    kind: str
    settings: Mapping[str, object] = field(default_factory=dict)
    secret_refs: Mapping[str, str] = field(default_factory=dict)


def channel_provider(channel: Channel, env: Mapping[str, str]) -> Provider:
    """The provider of one channel, its secrets read from the environment by reference; Unconfigured, with a reason
    that names the variable and never its value, when something is missing or wrong."""
    try:
        return _channel_provider(channel, env)
    except ProviderConfigError as error:
        return Unconfigured(channel.name, f"channel {channel.name}: {error}")


def _channel_provider(channel: Channel, env: Mapping[str, str]) -> Provider:
    kind = KINDS.get(channel.kind)
    if kind is None:
        raise ProviderConfigError(f"this dispatcher does not know the kind {channel.kind!r}: upgrade it")
    for what, given, known in (("secret", channel.secret_refs, kind.secrets), ("setting", channel.settings,
                                                                              kind.settings)):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ProviderConfigError(f"a {kind.name} channel takes no {what} {', '.join(unknown)} "
                                      f"(it takes: {', '.join(known) or 'none'})")
    grants = channel_secret_grants(env)
    values: dict[str, object] = {key: value if isinstance(value, list) else str(value or "").strip()
                                 for key, value in channel.settings.items()}
    labels: dict[str, str] = {}
    granted: dict[str, SecretGrant] = {}  # by variable: where each secret may go
    for key, reference in channel.secret_refs.items():
        variable = str(reference).removeprefix("env:")
        granted[variable] = _granted_secret(kind.name, key, variable, grants)
        value = (env.get(variable) or "").strip()
        if not value:
            raise ProviderConfigError(f"{key} names {variable}, which is not set")
        values[key] = value
        labels[key] = f"{key} ({variable})"  # the operator fixes the variable, the admin the key
    config = Config(channel.name, kind.name, values, labels, env, default=False)
    provider = kind.build(config)
    for label, url in config.urls:
        check_url(label, url, plain_http_allowed(env))
    destination = config.get(kind.destination) if kind.destination else ""
    if granted and destination:
        # where the secrets go, as the provider will send them: the vendor's hosts or those the operator listed
        _check_destination(kind, destination, granted)
    return provider


def all_secrets(providers: Mapping[str, Provider]) -> tuple[str, ...]:
    return tuple(s for p in providers.values() for s in p.secrets() if s)
