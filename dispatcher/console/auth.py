"""Signing in: passwords, session tokens, CSRF tokens, the trusted proxy. No I/O here."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from dispatcher.providers.checks import is_loopback

SESSION_COOKIE = "pgalert_session"
LOGIN_COOKIE = "pgalert_login"  # the sign-in form's CSRF token, before there is a session
_hasher = PasswordHasher()  # argon2id, the library's defaults (RFC 9106's second recommendation)
# checked when a login has no password, so a wrong login costs the time a wrong password does
_UNKNOWN = _hasher.hash(secrets.token_urlsafe(16))
PASSWORD_MIN = 12


def hash_password(password: str) -> str:
    if len(password) < PASSWORD_MIN:
        raise ValueError(f"a password needs at least {PASSWORD_MIN} characters")
    return _hasher.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _UNKNOWN, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_token() -> str:
    """A session token: 256 random bits. The database keeps its SHA-256, the person's cookie the token."""
    return secrets.token_urlsafe(32)


def csrf_token(session_token: str) -> str:
    """The token every form and htmx request of a session carries: derived from the session's, which a page of
    another site cannot read (the cookie is HttpOnly), so it cannot forge it either."""
    return hashlib.sha256(b"pgalert console csrf\0" + session_token.encode()).hexdigest()


def same_token(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def trusted(peer: str | None, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether a request comes from the single sign-on proxy, whose header names the person. `peer` is the TCP
    peer's address (inbound.proxies.tcp_peer), never one a header names: anyone can send X-Forwarded-For."""
    if not peer:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    # a socket that takes IPv4 and IPv6 sees an IPv4 peer as ::ffff:a.b.c.d
    address = getattr(address, "ipv4_mapped", None) or address
    return any(address in network for network in networks)


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """`10.0.0.5, 10.1.0.0/16`: the proxy's addresses."""
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.replace(" ", ",").split(",")
                     if part.strip())
    except ValueError as error:
        raise ValueError(f"not an address or network: {error}") from None


def cookie_secure(public_url: str, scheme: str, host: str) -> bool:
    """Whether cookies are Secure (sent over HTTPS only): unless browsers speak plain HTTP to this machine, where a
    test or a demo does. What browsers speak is PGALERT_PUBLIC_URL when it is set; else the request's scheme (a
    TLS proxy's X-Forwarded-Proto, believed by its TCP address from FORWARDED_ALLOW_IPS) and its Host. Plain HTTP
    elsewhere still gets a Secure cookie, which the browser refuses: put TLS in front."""
    try:
        if public_url:
            parts = urlsplit(public_url)
            scheme, name = parts.scheme, parts.hostname or ""
        else:
            name = urlsplit("//" + host).hostname or ""
    except ValueError:
        return True
    return scheme.lower() != "http" or not is_loopback(name)
