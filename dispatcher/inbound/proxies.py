"""Who is at the other end of serve's socket, kept apart from what a proxy's headers say.

serve believes X-Forwarded-For and X-Forwarded-Proto from the proxies FORWARDED_ALLOW_IPS names (127.0.0.1
unless set), as uvicorn does, for the client address it logs and limits sign-ins by and for the scheme. A
decision of trust (whether the single sign-on proxy is speaking) must not rest on those headers: any local
process can send them. So uvicorn's own rewriting is off (cli.py) and done here, after the socket's peer address
is kept in the request's scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Callable, Callable], Awaitable[None]]

_TCP_PEER = "pgalert.tcp_peer"


def with_tcp_peer(app: App, forwarded_allow_ips: str) -> App:
    """`app`, told the TCP peer of each request (tcp_peer), then the client and scheme that a proxy of
    `forwarded_allow_ips` (comma-separated addresses or networks, or *) forwards."""
    forwarded = ProxyHeadersMiddleware(app, trusted_hosts=forwarded_allow_ips)

    async def kept(scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] in ("http", "websocket"):
            scope[_TCP_PEER] = scope["client"][0] if scope.get("client") else None
        await forwarded(scope, receive, send)

    return kept


def tcp_peer(scope: Scope) -> str | None:
    """The address of the socket's peer, never a header's; None where with_tcp_peer did not run (trust nobody)."""
    return scope.get(_TCP_PEER)
