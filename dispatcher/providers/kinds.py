"""The registry of provider kinds: what each takes and how it is built, declared once.

A kind's default channel is configured by the dispatcher's environment (PAGERDUTY_INTEGRATION_KEY, ...); its
other channels are rows of monitoring_providers, whose secrets are `env:NAME` references. Both are built by the
same `build` from a Config that says where each value came from, so an error names what to fix: the variable
for a default channel, the setting or the secret and its variable for another.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dispatcher.providers.base import Provider
from dispatcher.providers.checks import ProviderConfigError, check_smtp_url, mail_address
from dispatcher.providers.jsm import JSM_API_URL, JiraServiceManagement
from dispatcher.providers.mail import Mail
from dispatcher.providers.ntfy import PUBLIC_SERVER, Ntfy
from dispatcher.providers.opsgenie import US_API_URL, Opsgenie
from dispatcher.providers.pagerduty import US_EVENTS_URL, PagerDuty
from dispatcher.providers.sentry import Sentry, parse_sentry_target
from dispatcher.providers.slack import Slack
from dispatcher.providers.teams import Teams
from dispatcher.providers.twilio import API_URL as TWILIO_API_URL
from dispatcher.providers.twilio import Twilio
from dispatcher.providers.webhook import Webhook, WebhookSecretError, signing_key


@dataclass
class Config:
    """The values one channel is built from (settings and secrets by key), and how an error names each."""

    name: str
    kind: str
    values: Mapping[str, str]
    labels: Mapping[str, str]
    env: Mapping[str, str]
    default: bool  # the kind's default channel, configured by the environment alone
    urls: list[tuple[str, str]] = field(default_factory=list)  # (label, URL) of every address used, to check

    def label(self, key: str) -> str:
        return self.labels.get(key, key)

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key) or default

    def required(self, key: str) -> str:
        value = self.values.get(key)
        if not value:
            raise ProviderConfigError(f"{self.label(key)} is not set" if self.default else f"secret_refs needs {key}")
        return value

    def url(self, key: str, default: str = "", *, secret: bool = False) -> str:
        """An address the channel sends to, checked before use; a default address is the vendor's own."""
        value = self.required(key) if secret else self.get(key)
        if value:
            self.urls.append((self.label(key), value))
        return value or default


@dataclass(frozen=True)
class Kind:
    name: str
    secrets: Mapping[str, str]  # a channel's secret keys, each with the variable that sets the default channel's
    settings: Mapping[str, str]  # a channel's setting keys, each with its default channel's variable, or ""
    configured_by: tuple[str, ...]  # the keys of which one, set, configures the default channel
    build: Callable[[Config], Provider]
    # Where the kind's secret may go when a setting chooses the address: the vendor's own hosts. The operator
    # adds others per variable; webhook and email have no vendor, so every host is the operator's to list.
    actions: tuple[str, ...] = ("trigger", "acknowledge", "resolve", "notify")  # what it sends; others skipped
    # its vendor's documented rate, as --pacing's COUNT/SECONDS:BURST: what the dispatcher keeps to by default
    pace: str | None = None
    vendor_hosts: tuple[str, ...] = ()
    destination: str | None = None  # the setting that chooses where its secrets go (else they are the address)

    def variables(self) -> tuple[str, ...]:
        """The default channel's environment variables."""
        return tuple(v for v in (*self.secrets.values(), *self.settings.values()) if v)


def _slack(config: Config) -> Provider:
    interactive = bool((config.env.get("SLACK_SIGNING_SECRET") or "").strip())
    return Slack(config.url("webhook_url", secret=True), name=config.name, interactive=interactive)


def _sentry(config: Config) -> Provider:
    key = "dsn" if config.get("dsn") else "webhook_url"
    if not config.get(key):
        raise ProviderConfigError("secret_refs needs dsn or webhook_url")
    config.urls.append((config.label(key), config.get(key)))
    try:
        return Sentry(parse_sentry_target(config.get("dsn") or None, config.get("webhook_url") or None,
                                          name=config.label(key)), name=config.name)
    except ValueError as error:
        raise ProviderConfigError(str(error)) from None


def _webhook(config: Config) -> Provider:
    url = config.url("url")
    if not url:
        raise ProviderConfigError("settings needs url")
    if config.default and not config.get("signing_secret"):
        raise ProviderConfigError(
            "PGALERT_WEBHOOK_URL is set but PGALERT_WEBHOOK_SECRET is not: webhooks are always signed")
    secret = config.required("signing_secret")
    try:
        signing_key(secret, channel=not config.default)
    except WebhookSecretError as error:
        raise ProviderConfigError(f"{config.label('signing_secret')} {error}") from None
    # the default channel keeps the v0 signature header beside the Standard Webhooks one for old receivers
    return Webhook(url, secret, name=config.name, legacy_signature=config.default)


def _email(config: Config) -> Provider:
    to = config.values.get("to")
    return mail_provider(config.name, (config.label("smtp_url"), config.get("smtp_url")),
                         (config.label("from"), config.get("from")),
                         (config.label("to"), ",".join(map(str, to)) if isinstance(to, list) else config.get("to")),
                         config.get("username"), config.get("password"))


def _twilio(config: Config) -> Provider:
    sid, number = config.get("account_sid"), config.get("from_number")
    if not re.fullmatch(r"AC[0-9a-f]{32}", sid):
        raise ProviderConfigError(f"{config.label('account_sid')} must be the account SID, AC and 32 hex digits")
    if not re.fullmatch(r"\+[1-9][0-9]{6,14}", number):
        raise ProviderConfigError(f"{config.label('from_number')} must be a Twilio number in E.164, e.g. +14155550100")
    return Twilio(sid, config.required("auth_token"), number, config.url("api_url", TWILIO_API_URL),
                  config.url("public_url"), name=config.name)


def _ntfy(config: Config) -> Provider:
    # the token goes to the channel's server only; topics come from people's verified contact methods
    return Ntfy(config.url("server_url", PUBLIC_SERVER), config.get("token"), config.url("public_url"),
                config.get("action_key"), name=config.name)


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


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("pagerduty", {"routing_key": "PAGERDUTY_INTEGRATION_KEY"}, {"events_url": "PAGERDUTY_EVENTS_URL"},
         ("routing_key",),
         lambda c: PagerDuty(c.required("routing_key"), c.url("events_url", US_EVENTS_URL), name=c.name),
         actions=("trigger", "acknowledge", "resolve"), pace="120/60:10",
         vendor_hosts=("events.pagerduty.com", "events.eu.pagerduty.com"), destination="events_url"),
    Kind("opsgenie", {"api_key": "OPSGENIE_API_KEY"}, {"api_url": "OPSGENIE_API_URL"}, ("api_key",),
         lambda c: Opsgenie(c.required("api_key"), c.url("api_url", US_API_URL), name=c.name),
         actions=("trigger", "acknowledge", "resolve"),
         vendor_hosts=("api.opsgenie.com", "api.eu.opsgenie.com"), destination="api_url"),
    Kind("jsm", {"api_key": "JSM_API_KEY"}, {"api_url": "JSM_API_URL"}, ("api_key",),
         lambda c: JiraServiceManagement(c.required("api_key"), c.url("api_url", JSM_API_URL), name=c.name),
         actions=("trigger", "acknowledge", "resolve"), vendor_hosts=("api.atlassian.com",), destination="api_url"),
    Kind("slack", {"webhook_url": "SLACK_WEBHOOK_URL"}, {"label": ""}, ("webhook_url",), _slack, pace="1/1:3"),
    Kind("teams", {"webhook_url": "TEAMS_WEBHOOK_URL"}, {"label": ""}, ("webhook_url",),
         lambda c: Teams(c.url("webhook_url", secret=True), name=c.name)),
    Kind("sentry", {"dsn": "SENTRY_DSN", "webhook_url": "SENTRY_WEBHOOK_URL"}, {}, ("dsn", "webhook_url"), _sentry,
         actions=("trigger",)),
    Kind("webhook", {"signing_secret": "PGALERT_WEBHOOK_SECRET"}, {"url": "PGALERT_WEBHOOK_URL"}, ("url",),
         _webhook, destination="url"),
    Kind("email", {"password": "EMAIL_SMTP_PASSWORD"},
         {"smtp_url": "EMAIL_SMTP_URL", "from": "EMAIL_FROM", "to": "EMAIL_TO", "username": "EMAIL_SMTP_USERNAME"},
         ("smtp_url",), _email, destination="smtp_url"),
    # people's own phones (sql/paging.sql): notify only, to verified contact methods
    Kind("twilio", {"auth_token": "TWILIO_AUTH_TOKEN"},
         {"account_sid": "TWILIO_ACCOUNT_SID", "from_number": "TWILIO_FROM_NUMBER", "api_url": "TWILIO_API_URL",
          "public_url": "PGALERT_PUBLIC_URL"},
         ("auth_token",), _twilio, actions=("notify",), pace="1/1:5", vendor_hosts=("api.twilio.com",),
         destination="api_url"),
    Kind("ntfy", {"token": "NTFY_TOKEN", "action_key": "PGALERT_ACTION_KEY"},
         {"server_url": "NTFY_SERVER_URL", "public_url": "PGALERT_PUBLIC_URL"}, ("server_url",), _ntfy,
         actions=("notify",), vendor_hosts=("ntfy.sh",), destination="server_url"),
)}


def default_pacing() -> str:
    """--pacing's default: each kind's vendor rate, e.g. `pagerduty=120/60:10,slack=1/1:3`."""
    return ",".join(f"{kind.name}={kind.pace}" for kind in KINDS.values() if kind.pace)
