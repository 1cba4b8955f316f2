"""One module per provider; this module builds them from the environment.

Secrets come only from the environment and are never written to the database or a log.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

from dispatcher.providers.base import Provider, Unconfigured
from dispatcher.providers.jsm import JSM_API_URL, JiraServiceManagement
from dispatcher.providers.opsgenie import US_API_URL, Opsgenie
from dispatcher.providers.pagerduty import US_EVENTS_URL, PagerDuty
from dispatcher.providers.sentry import Sentry, parse_sentry_target
from dispatcher.providers.slack import Slack
from dispatcher.providers.webhook import Webhook, WebhookSecretError, signing_key

PROVIDER_ENV = {
    "pagerduty": ("PAGERDUTY_INTEGRATION_KEY", "PAGERDUTY_EVENTS_URL"),
    "opsgenie": ("OPSGENIE_API_KEY", "OPSGENIE_API_URL"),
    "jsm": ("JSM_API_KEY", "JSM_API_URL"),
    "slack": ("SLACK_WEBHOOK_URL",),
    "sentry": ("SENTRY_DSN", "SENTRY_WEBHOOK_URL"),
    "webhook": ("PGALERT_WEBHOOK_URL", "PGALERT_WEBHOOK_SECRET"),
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
            raise ProviderConfigError(str(error)) from None
    providers["webhook"] = Webhook(url, secret) if url else Unconfigured("webhook", "PGALERT_WEBHOOK_URL is not set")

    allow_plain_http = get("PGALERT_ALLOW_PLAIN_HTTP").lower() in ("1", "true", "yes", "on")
    for variable, url in (("PAGERDUTY_EVENTS_URL", get("PAGERDUTY_EVENTS_URL")),
                          ("OPSGENIE_API_URL", get("OPSGENIE_API_URL")),
                          ("JSM_API_URL", get("JSM_API_URL")),
                          ("SLACK_WEBHOOK_URL", get("SLACK_WEBHOOK_URL")),
                          ("PGALERT_WEBHOOK_URL", get("PGALERT_WEBHOOK_URL")),
                          ("SENTRY_DSN" if dsn else "SENTRY_WEBHOOK_URL", dsn or sentry_url)):
        if url:
            check_url(variable, url, allow_plain_http)
    return providers


LOOPBACK_HOSTS = ("localhost", "::1")


def check_url(variable: str, url: str, allow_plain_http: bool = False) -> None:
    """Refuse a provider URL that cannot work or would send alerts in the clear. The message names the
    variable, never the URL: a Slack webhook URL or a Sentry DSN is itself a secret."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ProviderConfigError(f"{variable} is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ProviderConfigError(f"{variable} must start with https:// (it has no http(s) scheme)")
    if not host:
        raise ProviderConfigError(f"{variable} has no host")
    if parts.scheme == "http" and not allow_plain_http and not _is_loopback(host):
        raise ProviderConfigError(
            f"{variable} uses plain http:// to a host that is not this machine: alerts and keys would cross the "
            "network unencrypted. Use https://, or set PGALERT_ALLOW_PLAIN_HTTP=1 (e.g. behind a local proxy)"
        )


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def all_secrets(providers: Mapping[str, Provider]) -> tuple[str, ...]:
    return tuple(s for p in providers.values() for s in p.secrets() if s)
