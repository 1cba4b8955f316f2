"""Signing in: passwords, session tokens, CSRF tokens, the trusted proxy. No I/O here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from argon2 import PasswordHasher, Type
from argon2.low_level import hash_secret_raw

from dispatcher.providers.checks import is_loopback

SESSION_COOKIE = "pgalert_session"
LOGIN_COOKIE = "pgalert_login"  # the sign-in form's CSRF token, before there is a session
_hasher = PasswordHasher()  # argon2id, the library's defaults (RFC 9106's second recommendation)
PASSWORD_MIN = 12
# what deriving a hash may cost at most, whatever settings the database hands out: 256 MiB, 10 passes, 8 lanes
_MAX_MEMORY_KIB, _MAX_PASSES, _MAX_LANES, _MAX_LENGTH = 262_144, 10, 8, 64


class BadSettings(ValueError):
    """The database handed out argon2 settings this console will not derive with."""


def hash_password(password: str) -> str:
    if len(password) < PASSWORD_MIN:
        raise ValueError(f"a password needs at least {PASSWORD_MIN} characters")
    return _hasher.hash(password)


def derive_hash(argon2_settings: str, hash_length: int, password: str) -> str:
    """The argon2id hash of a typed password under a stored hash's settings and salt
    (`$argon2id$v=19$m=65536,t=3,p=4$<salt>$`), base64 as the encoded hash writes it: what the database compares
    with the hash it keeps (sql/console.sql), so the console never holds the hash nor decides the match."""
    parts = argon2_settings.split("$")
    if len(parts) != 6 or parts[1] != "argon2id" or parts[5] != "" or not parts[2].startswith("v="):
        raise BadSettings("not argon2id settings")
    try:
        version = int(parts[2][2:])
        costs = dict(item.split("=", 1) for item in parts[3].split(","))
        memory, passes, lanes = int(costs["m"]), int(costs["t"]), int(costs["p"])
        salt = base64.b64decode(parts[4] + "=" * (-len(parts[4]) % 4), validate=True)
    except (ValueError, KeyError) as error:
        raise BadSettings(f"unreadable argon2 settings: {error}") from None
    if not (0 < memory <= _MAX_MEMORY_KIB and 0 < passes <= _MAX_PASSES and 0 < lanes <= _MAX_LANES
            and 4 <= hash_length <= _MAX_LENGTH and len(salt) >= 8):
        raise BadSettings("argon2 settings beyond what the console derives")
    raw = hash_secret_raw(password.encode(), salt, time_cost=passes, memory_cost=memory, parallelism=lanes,
                          hash_len=hash_length, type=Type.ID, version=version)
    return base64.b64encode(raw).decode().rstrip("=")


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
