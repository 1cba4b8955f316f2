"""A local mail server that behaves like a submission server (RFC 6409): a real SMTP conversation (aiosmtpd) with
STARTTLS or implicit TLS, AUTH PLAIN/LOGIN only after TLS, a SIZE limit, and scripted refusals, so the email
channel is tested against SMTP itself rather than against a stand-in of our own.

Scripted by the recipient's local part: `refuse...@` answers 550 (no such mailbox, final), `busy...@` answers
451 (try again later). Every accepted message is kept with its envelope and whether it came over TLS.
"""

from __future__ import annotations

import email.parser
import email.policy
import socket
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

USERNAME = "pgalert-smtp"
PASSWORD = "Smtp-Pa55word-0f-the-fake"
SIZE_MAX = 1024 * 1024


@dataclass(frozen=True)
class Received:
    mail_from: str
    recipients: tuple[str, ...]
    over_tls: bool
    authenticated_as: str | None
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.parser.BytesParser(policy=email.policy.default).parsebytes(self.raw)


class _Handler:
    def __init__(self, server: FakeSmtp):
        self.server = server

    async def handle_RCPT(self, smtp: SMTP, session: Session, envelope: Envelope, address: str,  # noqa: N802
                          options: list[str]) -> str:
        local = address.partition("@")[0]
        if local.startswith("refuse"):
            return "550 5.1.1 No such mailbox"
        if local.startswith("busy"):
            return "451 4.3.0 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        auth = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        with self.server.lock:
            self.server.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos),
                                                  _over_tls(smtp, session), auth, bytes(envelope.content)))
            self.server.arrived.notify_all()
        return "250 2.0.0 Ok: queued"


def _over_tls(smtp: SMTP, session: Session) -> bool:
    """STARTTLS sets session.ssl; implicit TLS shows only on the transport."""
    return session.ssl is not None or smtp.transport.get_extra_info("ssl_object") is not None


class FakeSmtp:
    """`tls`: "starttls" (smtp://, STARTTLS required before MAIL), "implicit" (smtps://) or "none" (a server that
    never offers TLS, as a misconfigured or tampered one would look)."""

    def __init__(self, cert: str, key: str, tls: str = "starttls", require_auth: bool = True):
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        with socket.socket() as probe:  # aiosmtpd's controller needs the port before it starts
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        options = {"authenticator": self._authenticate, "auth_required": require_auth, "data_size_limit": SIZE_MAX}
        if tls == "starttls":
            self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, tls_context=context,
                                          require_starttls=True, auth_require_tls=True, **options)
        elif tls == "implicit":
            self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, ssl_context=context,
                                          auth_require_tls=False, server_hostname="127.0.0.1", **options)
        else:
            self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                          auth_require_tls=False, **options)
        self.url = f"{'smtps' if tls == 'implicit' else 'smtp'}://127.0.0.1:{self.port}"

    @staticmethod
    def _authenticate(smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object) -> AuthResult:
        valid = isinstance(data, LoginPassword) and (data.login, data.password) == (USERNAME.encode(),
                                                                                  PASSWORD.encode())
        # handled=False: aiosmtpd answers 535 itself; with its default (True) the client would wait for ever
        return AuthResult(success=valid, handled=False, auth_data=data if valid else None)

    def start(self) -> FakeSmtp:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """The messages received, once there are at least `count` (or the timeout passes)."""
        with self.lock:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)
