"""One module per provider; this module builds them from the environment.

Secrets come only from the environment and are never written to the database or a log.
"""

from __future__ import annotations

from collections.abc import Mapping

from dispatcher.providers.base import Provider, Unconfigured
from dispatcher.providers.opsgenie import US_API_URL, Opsgenie
from dispatcher.providers.pagerduty import US_EVENTS_URL, PagerDuty
from dispatcher.providers.sentry import Sentry, parse_sentry_target
from dispatcher.providers.slack import Slack
from dispatcher.providers.webhook import Webhook

PROVIDER_ENV = {
    "pagerduty": ("PAGERDUTY_INTEGRATION_KEY", "PAGERDUTY_EVENTS_URL"),
    "opsgenie": ("OPSGENIE_API_KEY", "OPSGENIE_API_URL"),
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
    url = get("SLACK_WEBHOOK_URL")
    providers["slack"] = Slack(url) if url else Unconfigured("slack", "SLACK_WEBHOOK_URL is not set")

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
    providers["webhook"] = Webhook(url, secret) if url else Unconfigured("webhook", "PGALERT_WEBHOOK_URL is not set")

    for name, provider in providers.items():
        url = getattr(provider, "events_url", None) or getattr(provider, "api_url", None)
        if url and not url.startswith(("http://", "https://")):
            raise ProviderConfigError(f"the {name} URL must start with http:// or https://")
    return providers


def all_secrets(providers: Mapping[str, Provider]) -> tuple[str, ...]:
    return tuple(s for p in providers.values() for s in p.secrets() if s)
