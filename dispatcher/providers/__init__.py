"""One module per provider; this module builds them from the environment.

Secrets come only from the environment and are never written to the database or a log. A channel (a row of
monitoring_providers beyond the default one of each kind) names its secrets as `env:NAME`; they are read here.

A channel is written by a database admin, who is not the operator of the dispatchers' hosts: a channel may name
only the variables that the operator lists in PGALERT_CHANNEL_SECRETS, each for one kind, and where a setting of
the channel chooses the destination (an events_url, api_url, webhook url or SMTP server) the secret goes only to
the vendor's own hosts or to hosts the operator listed beside it. No channel may name the dispatcher's own
variables (DATABASE_URL, PG*, the default channels' and pgalert serve's secrets), whatever the list says.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from dispatcher.providers.base import Provider, Unconfigured
from dispatcher.providers.jsm import JSM_API_URL, JiraServiceManagement
from dispatcher.providers.mail import Mail
from dispatcher.providers.opsgenie import US_API_URL, Opsgenie
from dispatcher.providers.pagerduty import US_EVENTS_URL, PagerDuty
from dispatcher.providers.sentry import Sentry, parse_sentry_target
from dispatcher.providers.slack import Slack
from dispatcher.providers.teams import Teams
from dispatcher.providers.webhook import Webhook, WebhookSecretError, signing_key

PROVIDER_ENV = {
    "pagerduty": ("PAGERDUTY_INTEGRATION_KEY", "PAGERDUTY_EVENTS_URL"),
    "opsgenie": ("OPSGENIE_API_KEY", "OPSGENIE_API_URL"),
    "jsm": ("JSM_API_KEY", "JSM_API_URL"),
    "slack": ("SLACK_WEBHOOK_URL",),
    "teams": ("TEAMS_WEBHOOK_URL",),
    "sentry": ("SENTRY_DSN", "SENTRY_WEBHOOK_URL"),
    "webhook": ("PGALERT_WEBHOOK_URL", "PGALERT_WEBHOOK_SECRET"),
    "email": ("EMAIL_SMTP_URL", "EMAIL_FROM", "EMAIL_TO", "EMAIL_SMTP_USERNAME", "EMAIL_SMTP_PASSWORD"),
}


class ProviderConfigError(ValueError):
    pass


def providers_from_env(env: Mapping[str, str]) -> dict[str, Provider]:
    """Every known provider: configured from env, or Unconfigured with the reason its deliveries are skipped."""
    get = lambda name: (env.get(name) or "").strip()  # noqa: E731
    providers: dict[str, Provider] = {}

    key = get("PAGERDUTY_INTEGRATION_KEY")
    providers["pagerduty"] = (
        PagerDuty(key, get("PAGERDUTY_EVENTS_URL") or US_EVENTS_URL)
        if key else Unconfigured("pagerduty", "PAGERDUTY_INTEGRATION_KEY is not set")
    )
    key = get("OPSGENIE_API_KEY")
    providers["opsgenie"] = (
        Opsgenie(key, get("OPSGENIE_API_URL") or US_API_URL)
        if key else Unconfigured("opsgenie", "OPSGENIE_API_KEY is not set")
    )
    key = get("JSM_API_KEY")
    providers["jsm"] = (
        JiraServiceManagement(key, get("JSM_API_URL") or JSM_API_URL)
        if key else Unconfigured("jsm", "JSM_API_KEY is not set")
    )
    url = get("SLACK_WEBHOOK_URL")
    providers["slack"] = (
        Slack(url, interactive=bool(get("SLACK_SIGNING_SECRET")))
        if url else Unconfigured("slack", "SLACK_WEBHOOK_URL is not set")
    )
    url = get("TEAMS_WEBHOOK_URL")
    providers["teams"] = Teams(url) if url else Unconfigured("teams", "TEAMS_WEBHOOK_URL is not set")

    dsn, sentry_url = get("SENTRY_DSN"), get("SENTRY_WEBHOOK_URL")
    if dsn or sentry_url:
        try:
            providers["sentry"] = Sentry(parse_sentry_target(dsn or None, sentry_url or None))
        except ValueError as error:
            raise ProviderConfigError(str(error)) from None
    else:
        providers["sentry"] = Unconfigured("sentry", "neither SENTRY_DSN nor SENTRY_WEBHOOK_URL is set")

    url, secret = get("PGALERT_WEBHOOK_URL"), get("PGALERT_WEBHOOK_SECRET")
    if url and not secret:
        raise ProviderConfigError(
            "PGALERT_WEBHOOK_URL is set but PGALERT_WEBHOOK_SECRET is not: webhooks are always signed"
        )
    if url:
        try:
            signing_key(secret)
        except WebhookSecretError as error:
            raise ProviderConfigError(f"PGALERT_WEBHOOK_SECRET {error}") from None
    providers["webhook"] = Webhook(url, secret) if url else Unconfigured("webhook", "PGALERT_WEBHOOK_URL is not set")

    url = get("EMAIL_SMTP_URL")
    providers["email"] = mail_provider(
        "email", ("EMAIL_SMTP_URL", url), ("EMAIL_FROM", get("EMAIL_FROM")), ("EMAIL_TO", get("EMAIL_TO")),
        get("EMAIL_SMTP_USERNAME"), get("EMAIL_SMTP_PASSWORD")
    ) if url else Unconfigured("email", "EMAIL_SMTP_URL is not set")

    channel_secret_grants(env)  # a mistake in the operator's list stops the start, with what is wrong
    allow_plain_http = get("PGALERT_ALLOW_PLAIN_HTTP").lower() in ("1", "true", "yes", "on")
    for variable, url in (("PAGERDUTY_EVENTS_URL", get("PAGERDUTY_EVENTS_URL")),
                          ("OPSGENIE_API_URL", get("OPSGENIE_API_URL")),
                          ("JSM_API_URL", get("JSM_API_URL")),
                          ("SLACK_WEBHOOK_URL", get("SLACK_WEBHOOK_URL")),
                          ("TEAMS_WEBHOOK_URL", get("TEAMS_WEBHOOK_URL")),
                          ("PGALERT_WEBHOOK_URL", get("PGALERT_WEBHOOK_URL")),
                          ("SENTRY_DSN" if dsn else "SENTRY_WEBHOOK_URL", dsn or sentry_url)):
        if url:
            check_url(variable, url, allow_plain_http)
    return providers


# What a channel of each kind takes: secrets by reference, then non-secret settings.
CHANNEL_SECRETS = {
    "pagerduty": ("routing_key",), "opsgenie": ("api_key",), "jsm": ("api_key",), "slack": ("webhook_url",),
    "teams": ("webhook_url",), "sentry": ("dsn", "webhook_url"), "webhook": ("signing_secret",),
    "email": ("password",),
}
CHANNEL_SETTINGS = {
    "pagerduty": ("events_url",), "opsgenie": ("api_url",), "jsm": ("api_url",), "slack": ("label",),
    "teams": ("label",), "sentry": (), "webhook": ("url",), "email": ("smtp_url", "from", "to", "username"),
}


CHANNEL_SECRETS_VARIABLE = "PGALERT_CHANNEL_SECRETS"
# Where a kind's secret may go when a channel's setting chooses the address: the vendor's own hosts. The operator
# adds others per variable (a regional or test endpoint); webhook and email have no vendor, so every host is
# the operator's to list.
VENDOR_HOSTS = {
    "pagerduty": ("events.pagerduty.com", "events.eu.pagerduty.com"),
    "opsgenie": ("api.opsgenie.com", "api.eu.opsgenie.com"),
    "jsm": ("api.atlassian.com",),
}
# the setting that chooses where a kind's secret goes; slack, teams and sentry secrets are their destination
DESTINATION_SETTING = {"pagerduty": "events_url", "opsgenie": "api_url", "jsm": "api_url", "webhook": "url",
                       "email": "smtp_url"}
# the dispatcher's and pgalert serve's own variables: never a channel's, whatever the operator's list says
OWN_VARIABLES = frozenset(
    {"DATABASE_URL", "PRODUCTION_URL", "SLACK_SIGNING_SECRET", "PAGERDUTY_WEBHOOK_SECRETS", "PAGERDUTY_API_TOKEN",
     "OPSGENIE_WEBHOOK_TOKEN"} | {name for names in PROVIDER_ENV.values() for name in names})


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
        if (not re.fullmatch(r"[A-Z_][A-Z0-9_]*", name) or kind not in CHANNEL_SECRETS
                or not all(re.fullmatch(r"[a-z0-9.:\[\]-]+", h) for h in host_list)):
            raise ProviderConfigError(
                f"{CHANNEL_SECRETS_VARIABLE}: {entry!r} is not NAME=KIND[@HOST|HOST...] with KIND one of "
                f"{', '.join(CHANNEL_SECRETS)}, e.g. PAGERDUTY_KEY_PAYMENTS=pagerduty")
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


def _check_destination(kind: str, setting_name: str, url: str, variables: Mapping[str, SecretGrant]) -> None:
    """A secret chosen by reference goes only where the operator let it: its vendor's hosts or those listed."""
    host = (urlsplit(url).hostname or "").lower()
    for variable, grant in variables.items():
        allowed = VENDOR_HOSTS.get(kind, ()) + grant.hosts
        if host not in allowed:
            raise ProviderConfigError(
                f"{setting_name} points at {host}, where {variable} may not go: "
                + (f"{CHANNEL_SECRETS_VARIABLE} allows it to {', '.join(allowed)} only" if allowed else
                   f"list the host in {CHANNEL_SECRETS_VARIABLE}, e.g. {variable}={kind}@{host}"))


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
    kind, name = channel.kind, channel.name
    if kind not in CHANNEL_SECRETS:
        raise ProviderConfigError(f"this dispatcher does not know the kind {kind!r}: upgrade it")
    for what, given, known in (("secret", channel.secret_refs, CHANNEL_SECRETS[kind]),
                               ("setting", channel.settings, CHANNEL_SETTINGS[kind])):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ProviderConfigError(f"a {kind} channel takes no {what} {', '.join(unknown)} "
                                      f"(it takes: {', '.join(known) or 'none'})")
    grants = channel_secret_grants(env)
    secrets: dict[str, str] = {}
    granted: dict[str, SecretGrant] = {}  # by variable: where each secret may go
    for key, reference in channel.secret_refs.items():
        variable = str(reference).removeprefix("env:")
        granted[variable] = _granted_secret(kind, key, variable, grants)
        value = (env.get(variable) or "").strip()
        if not value:
            raise ProviderConfigError(f"{key} names {variable}, which is not set")
        secrets[key] = value
    setting = lambda key, default="": str(channel.settings.get(key) or default).strip()  # noqa: E731
    allow_plain_http = (env.get("PGALERT_ALLOW_PLAIN_HTTP") or "").strip().lower() in ("1", "true", "yes", "on")
    urls: list[tuple[str, str]] = []
    destination = ""  # email's SMTP server; the others' destination is among urls

    def named(key: str) -> str:
        """A secret's key and its variable: the operator fixes the variable, the admin the key."""
        reference = channel.secret_refs.get(key)
        return f"{key} ({str(reference).removeprefix('env:')})" if reference else key

    def required(key: str) -> str:
        if key not in secrets:
            raise ProviderConfigError(f"secret_refs needs {key}")
        return secrets[key]

    provider: Provider
    if kind == "pagerduty":
        urls.append(("events_url", setting("events_url", US_EVENTS_URL)))
        provider = PagerDuty(required("routing_key"), urls[-1][1], name=name)
    elif kind in ("opsgenie", "jsm"):
        cls, default = (Opsgenie, US_API_URL) if kind == "opsgenie" else (JiraServiceManagement, JSM_API_URL)
        urls.append(("api_url", setting("api_url", default)))
        provider = cls(required("api_key"), urls[-1][1], name=name)
    elif kind == "slack":
        urls.append((named("webhook_url"), required("webhook_url")))
        provider = Slack(urls[-1][1], name=name, interactive=bool((env.get("SLACK_SIGNING_SECRET") or "").strip()))
    elif kind == "teams":
        urls.append((named("webhook_url"), required("webhook_url")))
        provider = Teams(urls[-1][1], name=name)
    elif kind == "email":
        to = channel.settings.get("to")
        provider = mail_provider(name, ("smtp_url", setting("smtp_url")), ("from", setting("from")),
                                 ("to", ",".join(map(str, to)) if isinstance(to, list) else setting("to")),
                                 setting("username"), secrets.get("password", ""))
        destination = provider.smtp_url
    elif kind == "sentry":
        if not secrets:
            raise ProviderConfigError("secret_refs needs dsn or webhook_url")
        urls.append((named("dsn" if "dsn" in secrets else "webhook_url"), secrets.get("dsn") or secrets["webhook_url"]))
        try:
            target = parse_sentry_target(secrets.get("dsn"), secrets.get("webhook_url"), name=urls[-1][0])
            provider = Sentry(target, name=name)
        except ValueError as error:
            raise ProviderConfigError(str(error)) from None
    else:
        url = setting("url")
        if not url:
            raise ProviderConfigError("settings needs url")
        try:
            signing_key(required("signing_secret"), channel=True)
        except WebhookSecretError as error:
            raise ProviderConfigError(f"{named('signing_secret')} {error}") from None
        urls.append(("url", url))
        provider = Webhook(url, secrets["signing_secret"], name=name, legacy_signature=False)
    for key, url in urls:
        check_url(key, url, allow_plain_http)
    if granted and kind in DESTINATION_SETTING:
        # where the secrets go, as the provider will send them: the vendor's hosts or those the operator listed
        _check_destination(kind, DESTINATION_SETTING[kind], destination or dict(urls)[DESTINATION_SETTING[kind]],
                           granted)
    return provider


LOOPBACK_HOSTS = ("localhost", "::1")


def mail_provider(name: str, url: tuple[str, str], sender: tuple[str, str], to: tuple[str, str], username: str,
                  password: str) -> Mail:
    """An email channel from its settings, each given as (what it is called, value), so an error names the
    variable or setting to fix."""
    (url_name, smtp_url), (from_name, from_value), (to_name, to_value) = url, sender, to
    starttls_required = check_smtp_url(url_name, smtp_url)
    if not mail_address(from_value):
        raise ProviderConfigError(f"{from_name} must be one mail address, e.g. pgalert <alerts@example.com>")
    recipients = tuple(part.strip() for part in to_value.split(",") if part.strip())
    if not recipients or not all(mail_address(r) for r in recipients):
        raise ProviderConfigError(f"{to_name} must be one or more mail addresses, separated by commas")
    if password and not username:
        raise ProviderConfigError(f"a password is set for {name} but no username")
    return Mail(smtp_url, from_value, tuple(email.utils.parseaddr(r)[1] for r in recipients), username, password,
                starttls_required, name=name)


def mail_address(text: str) -> bool:
    """One address, bare or with a display name; nothing that could add a header or a recipient."""
    if any(c in text for c in "\r\n\0") or text.count("@") != 1:
        return False
    address = email.utils.parseaddr(text)[1]
    local, _, domain = address.partition("@")
    return bool(local and domain and " " not in address)


def check_smtp_url(variable: str, url: str) -> bool:
    """Refuse an SMTP URL that cannot work or would carry the password in it; True when STARTTLS is required
    (smtp:// to any host but this machine, whose local relay may not offer it; smtps:// is TLS anyway)."""
    parts, host = _parsed_url(variable, url, ("smtp", "smtps"),
                              "smtps:// (implicit TLS, port 465) or smtp:// (STARTTLS, port 587)")
    if parts.username or parts.password:
        raise ProviderConfigError(f"{variable} must not carry a user or password: give them as the username "
                                  "setting and the password secret")
    return parts.scheme == "smtps" or not _is_loopback(host)


def check_url(variable: str, url: str, allow_plain_http: bool = False) -> None:
    """Refuse a provider URL that cannot work or would send alerts in the clear. The message names the
    variable, never the URL: a Slack webhook URL or a Sentry DSN is itself a secret."""
    parts, host = _parsed_url(variable, url, ("http", "https"), "https:// (it has no http(s) scheme)")
    if parts.scheme == "http" and not allow_plain_http and not _is_loopback(host):
        raise ProviderConfigError(
            f"{variable} uses plain http:// to a host that is not this machine: alerts and keys would cross the "
            "network unencrypted. Use https://, or set PGALERT_ALLOW_PLAIN_HTTP=1 (e.g. behind a local proxy)"
        )


def _parsed_url(variable: str, url: str, schemes: tuple[str, ...], expected: str) -> tuple[SplitResult, str]:
    """The URL's parts and host, or an error that names the variable and never the URL."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ProviderConfigError(f"{variable} is not a valid URL") from None
    if parts.scheme not in schemes:
        raise ProviderConfigError(f"{variable} must start with {expected}")
    if not host:
        raise ProviderConfigError(f"{variable} has no host")
    return parts, host


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def all_secrets(providers: Mapping[str, Provider]) -> tuple[str, ...]:
    return tuple(s for p in providers.values() for s in p.secrets() if s)
