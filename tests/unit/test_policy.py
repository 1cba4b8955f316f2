"""Retry timing, Retry-After parsing, pacing specs, provider configuration and redaction."""

from __future__ import annotations

import datetime as dt
import email.utils
import random

import pytest

from dispatcher.providers import (
    CHANNEL_SECRETS_VARIABLE as GRANTS,
)
from dispatcher.providers import Channel, ProviderConfigError, all_secrets, channel_provider, providers_from_env
from dispatcher.providers.base import (
    Delivery,
    HttpResponse,
    Unconfigured,
    Verdict,
    judge_by_status,
    retry_after_seconds,
)
from dispatcher.redact import redact
from dispatcher.retry import RetryPolicy
from dispatcher.settings import Pace, Settings, parse_pacing
from dispatcher.worker import decide


def test_backoff_doubles_with_jitter_up_to_the_cap():
    policy = RetryPolicy(max_attempts=10, base_seconds=1, cap_seconds=60)
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (7, 60), (9, 60)]:
        delays = [policy.delay(attempt, rng=rng) for _ in range(200)]
        assert ceiling / 2 <= min(delays) and max(delays) <= ceiling


def test_backoff_never_undercuts_retry_after():
    assert RetryPolicy().delay(1, retry_after=42) == 42


def test_retry_after_in_seconds_or_as_http_date():
    assert retry_after_seconds("120") == 120
    when = email.utils.format_datetime(dt.datetime(2030, 1, 1, tzinfo=dt.UTC), usegmt=True)
    assert retry_after_seconds(when, now=dt.datetime(2029, 12, 31, 23, 59, tzinfo=dt.UTC).timestamp()) == 60
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


@pytest.mark.parametrize(("status", "outcome"), [(200, "succeeded"), (204, "succeeded"), (400, "failed"), (401, "failed"),
                                                   (403, "failed"), (404, "failed"), (408, "retry"), (413, "failed"),
                                                   (429, "retry"), (500, "retry"), (502, "retry"), (504, "retry")])
def test_status_classification(status, outcome):
    assert judge_by_status(HttpResponse(status, {}, b"")).outcome == outcome


def test_decide_schedules_a_retry_and_fails_when_attempts_run_out():
    settings = Settings(retry=RetryPolicy(max_attempts=3, base_seconds=10, cap_seconds=10))
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    early = Delivery(1, 1, "slack", "trigger", "", {}, "k", {})
    verdict, retry_at = decide(early, Verdict("retry", "HTTP 503"), settings, now)
    assert verdict.outcome == "retry" and now + dt.timedelta(seconds=5) <= retry_at <= now + dt.timedelta(seconds=10)
    last = Delivery(1, 3, "slack", "trigger", "", {}, "k", {})
    verdict, retry_at = decide(last, Verdict("retry", "HTTP 503"), settings, now)
    assert (verdict.outcome, retry_at) == ("failed", None) and "gave up after 3 attempts; last: HTTP 503" in verdict.error


def test_pacing_specs():
    assert parse_pacing("slack=1/1:3, pagerduty=120/60") == {"slack": Pace(1.0, 3), "pagerduty": Pace(0.5, 1)}
    assert parse_pacing("off") == {}
    for bad in ("slack=fast", "slack=0/1", "slack=1/1:0", "slack"):
        with pytest.raises(ValueError, match="slack"):
            parse_pacing(bad)


def test_unconfigured_providers_say_why():
    providers = providers_from_env({})
    assert all(isinstance(p, Unconfigured) for p in providers.values())
    assert providers["pagerduty"].reason == "PAGERDUTY_INTEGRATION_KEY is not set"
    assert set(providers) == {"pagerduty", "opsgenie", "jsm", "slack", "teams", "sentry", "webhook", "email", "twilio",
                              "ntfy"}
    assert providers["jsm"].reason == "JSM_API_KEY is not set"


def test_seed_secret_names_configure_the_providers():
    env = {"PAGERDUTY_INTEGRATION_KEY": "pd", "OPSGENIE_API_KEY": "og", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/X",
           "SENTRY_WEBHOOK_URL": "https://pub@o1.ingest.sentry.io/9"}
    providers = providers_from_env(env)
    assert not any(isinstance(providers[n], Unconfigured) for n in ("pagerduty", "opsgenie", "slack", "sentry"))
    assert {"pd", "og", "pub", "/services/T/B/X"} <= set(all_secrets(providers))


@pytest.mark.parametrize(("env", "message"), [
    ({"PGALERT_WEBHOOK_URL": "https://x"}, "PGALERT_WEBHOOK_SECRET is not"),
    ({"SENTRY_DSN": "nonsense"}, "SENTRY_DSN must be an http"),
    ({"PAGERDUTY_INTEGRATION_KEY": "k", "PAGERDUTY_EVENTS_URL": "events.pagerduty.com"}, "PAGERDUTY_EVENTS_URL must start with https://"),
    ({"PAGERDUTY_INTEGRATION_KEY": "k", "PAGERDUTY_EVENTS_URL": "http://"}, "PAGERDUTY_EVENTS_URL has no host"),
    ({"SLACK_WEBHOOK_URL": "hooks.slack.com/services/T000/B000/XXXX"}, "SLACK_WEBHOOK_URL must start with https://"),
    ({"SLACK_WEBHOOK_URL": "http://hooks.slack.com/services/T000/B000/XXXX"}, "plain http:// to a host that is not this machine"),
    ({"OPSGENIE_API_KEY": "k", "OPSGENIE_API_URL": "http://api.opsgenie.com"}, "OPSGENIE_API_URL uses plain http://"),
    ({"JSM_API_KEY": "k", "JSM_API_URL": "http://api.atlassian.com/jsm/ops/integration"}, "JSM_API_URL uses plain http://"),
    ({"PGALERT_WEBHOOK_URL": "https://hooks.example.com:port/x", "PGALERT_WEBHOOK_SECRET": "whsec_c2VjcmV0"}, "PGALERT_WEBHOOK_URL is not a valid URL"),
    ({"SENTRY_WEBHOOK_URL": "http://KEY@sentry.example.com/42"}, "SENTRY_WEBHOOK_URL uses plain http://"),
    ({"EMAIL_SMTP_URL": "https://mail.example.com", "EMAIL_FROM": "a@example.com", "EMAIL_TO": "b@example.com"},
     "EMAIL_SMTP_URL must start with smtps://"),
    ({"EMAIL_SMTP_URL": "smtp://alerts:hunter2pass@mail.example.com:587", "EMAIL_FROM": "a@example.com", "EMAIL_TO": "b@example.com"},
     "EMAIL_SMTP_URL must not carry a user or password"),
    ({"EMAIL_SMTP_URL": "smtps://mail.example.com", "EMAIL_TO": "b@example.com"}, "EMAIL_FROM must be one mail address"),
    ({"EMAIL_SMTP_URL": "smtps://mail.example.com", "EMAIL_FROM": "a@example.com"}, "EMAIL_TO must be one or more"),
    ({"EMAIL_SMTP_URL": "smtps://mail.example.com", "EMAIL_FROM": "a@example.com", "EMAIL_TO": "b@example.com\r\nBcc: c@example.com"},
     "EMAIL_TO must be one or more"),
    ({"EMAIL_SMTP_URL": "smtps://mail.example.com", "EMAIL_FROM": "a@example.com", "EMAIL_TO": "b@example.com",
      "EMAIL_SMTP_PASSWORD": "hunter2pass"}, "a password is set for email but no username"),
])
def test_bad_provider_configuration_is_explained_without_the_url(env, message):
    with pytest.raises(ProviderConfigError, match=message) as refused:
        providers_from_env(env)
    for value in env.values():  # a webhook URL or a DSN is itself a secret
        assert len(value) < 5 or value not in str(refused.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/hook", "http://localhost/hook", "http://[::1]:8080/hook", "https://hooks.slack.com/x"])
def test_https_anywhere_and_plain_http_to_this_machine_are_accepted(url):
    assert providers_from_env({"SLACK_WEBHOOK_URL": url})["slack"].name == "slack"


def test_plain_http_elsewhere_only_when_allowed_explicitly():
    env = {"SLACK_WEBHOOK_URL": "http://proxy.internal/hook", "PGALERT_ALLOW_PLAIN_HTTP": "1"}
    assert providers_from_env(env)["slack"].name == "slack"


@pytest.mark.parametrize(("url", "starttls_required"), [
    ("smtp://mail.example.com:587", True),  # STARTTLS or nothing: the password never crosses in clear
    ("smtps://mail.example.com:465", True),
    ("smtp://127.0.0.1:25", False),  # this machine's own relay may not offer STARTTLS; used when it does
    ("smtp://localhost", False),
])
def test_email_from_the_environment(url, starttls_required):
    env = {"EMAIL_SMTP_URL": url, "EMAIL_FROM": "pgalert <alerts@example.com>", "EMAIL_TO": "ops@example.com, Lead <lead@example.org>",
           "EMAIL_SMTP_USERNAME": "alerts", "EMAIL_SMTP_PASSWORD": "hunter2pass"}
    mail = providers_from_env(env)["email"]
    assert (mail.smtp_url, mail.recipients, mail.username, mail.starttls_required) == (
        url, ("ops@example.com", "lead@example.org"), "alerts", starttls_required)
    assert all_secrets({"email": mail}) == ("hunter2pass",)  # the username is not redacted from every log line
    assert "hunter2pass" not in repr(mail)


def test_an_email_channel_takes_its_settings_and_its_password_by_reference():
    channel = Channel("email_payments", "email", {"smtp_url": "smtps://smtp.example.com", "from": "alerts@example.com",
                                                   "to": ["payments@example.com", "cfo@example.com"], "username": "alerts"},
                      {"password": "env:SMTP_PASSWORD_PAYMENTS"})
    mail = channel_provider(channel, {"SMTP_PASSWORD_PAYMENTS": "s3cret-pw",
                                      "PGALERT_CHANNEL_SECRETS": "SMTP_PASSWORD_PAYMENTS=email@smtp.example.com"})
    assert (mail.name, mail.recipients, mail.password) == ("email_payments", ("payments@example.com", "cfo@example.com"), "s3cret-pw")


def test_redaction_masks_every_secret_and_the_longest_first():
    secrets = ["https://hooks.slack.com/services/T/B/X", "/services/T/B/X", "pd-key"]
    text = "POST https://hooks.slack.com/services/T/B/X failed; url: /services/T/B/X key=pd-key"
    assert redact(text, secrets) == "POST [redacted] failed; url: [redacted] key=[redacted]"
    assert redact(None, secrets) is None


def test_a_channel_reads_its_secrets_from_the_environment_by_reference():
    env = {"PAGERDUTY_KEY_PAYMENTS": "pd-payments", "SLACK_WEBHOOK_PAYMENTS": "https://hooks.slack.com/services/T/P/Y",
           "PGALERT_CHANNEL_SECRETS": "PAGERDUTY_KEY_PAYMENTS=pagerduty, SLACK_WEBHOOK_PAYMENTS=slack"}
    pagerduty = channel_provider(Channel("pagerduty_payments", "pagerduty", {}, {"routing_key": "env:PAGERDUTY_KEY_PAYMENTS"}), env)
    slack = channel_provider(Channel("slack_payments", "slack", {"label": "#payments"},
                                     {"webhook_url": "env:SLACK_WEBHOOK_PAYMENTS"}), env)
    assert (pagerduty.name, pagerduty.routing_key) == ("pagerduty_payments", "pd-payments")
    assert (slack.name, slack.webhook_url) == ("slack_payments", env["SLACK_WEBHOOK_PAYMENTS"])
    assert {"pd-payments", "/services/T/P/Y"} <= set(all_secrets({"a": pagerduty, "b": slack}))


@pytest.mark.parametrize(("channel", "env", "reason"), [
    (Channel("pd_x", "pagerduty", {}, {"routing_key": "env:PD_X"}), {GRANTS: "PD_X=pagerduty"}, "channel pd_x: routing_key names PD_X, which is not set"),
    (Channel("pd_x", "pagerduty", {}, {}), {}, "secret_refs needs routing_key"),
    (Channel("pd_x", "pagerduty", {"region": "eu"}, {"routing_key": "env:PD_X"}), {"PD_X": "pd-secret-key", GRANTS: "PD_X=pagerduty"},
     "a pagerduty channel takes no setting region (it takes: events_url)"),
    (Channel("slack_x", "slack", {}, {"url": "env:S"}), {"S": "https://hooks.slack.com/x"},
     "a slack channel takes no secret url (it takes: webhook_url)"),
    (Channel("slack_x", "slack", {}, {"webhook_url": "env:S"}), {"S": "http://hooks.slack.com/services/T/B/SECRETPART", GRANTS: "S=slack"},
     "webhook_url (S) uses plain http://"),
    (Channel("hook_x", "webhook", {"url": "https://hooks.example.com/x"}, {"signing_secret": "env:W"}), {"W": "short", GRANTS: "W=webhook@hooks.example.com"},
     "channel hook_x:"),
    (Channel("pigeon_x", "carrier_pigeon", {}, {}), {}, "does not know the kind 'carrier_pigeon': upgrade it"),
    (Channel("teams_x", "teams", {}, {}), {}, "secret_refs needs webhook_url"),
    (Channel("mail_x", "email", {"smtp_url": "smtps://smtp.example.com", "from": "a@example.com", "to": "b@example.com",
                                 "username": "u"}, {"password": "env:MAIL_X"}), {GRANTS: "MAIL_X=email@smtp.example.com"}, "password names MAIL_X, which is not set"),
    (Channel("mail_x", "email", {"smtp_url": "smtps://smtp.example.com", "from": "a@example.com", "to": ["not an address"]}, {}),
     {}, "to must be one or more mail addresses"),
])
def test_a_channel_that_cannot_work_is_skipped_with_a_reason_that_never_holds_the_secret(channel, env, reason):
    provider = channel_provider(channel, env)
    assert isinstance(provider, Unconfigured) and reason in provider.reason
    for name, value in env.items():
        assert name == GRANTS or value not in provider.reason
