"""`pgalert serve`'s settings: one frozen value built from flags and the environment (the flags' defaults are
these). No I/O, and nothing heavy to import: the CLI reads the defaults without loading the HTTP stack."""

from __future__ import annotations

from dataclasses import dataclass

PAGERDUTY_API_URL = "https://api.pagerduty.com"


@dataclass(frozen=True)
class ServeSettings:
    database_url: str = ""
    max_body_bytes: int = 1 << 20
    body_timeout: float = 10.0  # a body still arriving after this is refused (408), not waited for
    pagerduty_webhook_secrets: tuple[str, ...] = ()
    pagerduty_api_token: str = ""
    pagerduty_api_url: str = PAGERDUTY_API_URL
    slack_signing_secret: str = ""
    slack_response_url_prefix: str = "https://hooks.slack.com/"
    opsgenie_webhook_token: str = ""
    alertmanager_default_severity: str = "warning"
    pool_size: int = 10
    lookup_timeout: float = 3.0  # PagerDuty wants an answer within 5 s
    statement_timeout_ms: int = 4000
    console: bool = True  # the web console under /console (needs the login to hold monitoring_console too)
    console_session_hours: float = 12.0
    console_auth_header: str = ""  # single sign-on: the trusted proxy's header that names the person
    console_trusted_proxies: str = ""  # the addresses whose console_auth_header is believed
    twilio_auth_token: str = ""  # Twilio signs its callbacks with it (X-Twilio-Signature)
    public_url: str = ""  # this service's URL as Twilio calls it (behind a proxy, not the one uvicorn sees)
    action_key: str = ""  # signs the one-time action links of pushes (shared with the dispatchers)

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (*self.pagerduty_webhook_secrets, self.pagerduty_api_token,
                                 self.slack_signing_secret, self.opsgenie_webhook_token, self.twilio_auth_token,
                                 self.action_key) if s)
