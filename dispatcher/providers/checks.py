"""What a provider's address or a mail address must be before anything is sent to it. Errors name the variable
or setting to fix, never the value: a Slack webhook URL or a Sentry DSN is itself a secret."""

from __future__ import annotations

import email.utils
import ipaddress
from collections.abc import Mapping
from urllib.parse import SplitResult, urlsplit

LOOPBACK_HOSTS = ("localhost", "::1")


class ProviderConfigError(ValueError):
    pass


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
    return parts.scheme == "smtps" or not is_loopback(host)


def plain_http_allowed(env: Mapping[str, str]) -> bool:
    """PGALERT_ALLOW_PLAIN_HTTP: the operator allows http:// to hosts that are not this machine."""
    return (env.get("PGALERT_ALLOW_PLAIN_HTTP") or "").strip().lower() in ("1", "true", "yes", "on")


def check_url(variable: str, url: str, allow_plain_http: bool = False) -> None:
    """Refuse a provider URL that cannot work or would send alerts in the clear."""
    parts, host = _parsed_url(variable, url, ("http", "https"), "https:// (it has no http(s) scheme)")
    if parts.scheme == "http" and not allow_plain_http and not is_loopback(host):
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


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
