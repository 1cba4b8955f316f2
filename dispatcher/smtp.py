"""Mail on the send path's loop (dispatcher.http): the libcurl options of one SMTP transfer and how the server's
reply reads. libcurl speaks SMTP, so a message is one more transfer on the HTTP loop, with its timeouts."""

from __future__ import annotations

import io

import pycurl

from dispatcher.providers.base import HttpResponse, MailRequest


def configure(handle: pycurl.Curl, request: MailRequest) -> None:
    """A handle already reset and pointed at the URL, smtp(s)://host:port/name-to-greet-with."""
    handle.setopt(pycurl.PROXY, "")  # HTTP(S)_PROXY is for HTTP: mail goes to its server directly
    # smtps:// is TLS from the start; on smtp://, USESSL_ALL refuses to go on unless STARTTLS succeeds, so a
    # server (or a man in the middle) that stops offering it never gets the password or the alert in clear
    handle.setopt(pycurl.USE_SSL, pycurl.USESSL_ALL if request.starttls_required else pycurl.USESSL_TRY)
    if request.username:
        handle.setopt(pycurl.USERNAME, request.username)
        handle.setopt(pycurl.PASSWORD, request.password)
    handle.setopt(pycurl.MAIL_FROM, f"<{request.mail_from}>")
    handle.setopt(pycurl.MAIL_RCPT, [f"<{address}>" for address in request.recipients])
    handle.setopt(pycurl.UPLOAD, 1)
    handle.setopt(pycurl.READFUNCTION, io.BytesIO(request.message).read)
    handle.setopt(pycurl.INFILESIZE, len(request.message))


def reply(status: int, reply_lines: list[bytes]) -> HttpResponse:
    """The server's last reply line ("250 2.0.0 Ok: queued") and its code, what a message's fate is told by;
    as an HttpResponse, so the mail provider judges it like any other reply."""
    last = reply_lines[-1].rstrip(b"\r\n") if reply_lines else b""
    return HttpResponse(status, {}, last)


def refused(status: int, curl_code: int) -> bool:
    """A failed transfer in which the server said no (a 4xx to try again, a 5xx for good), rather than one that
    timed out or lost its connection: the provider judges the code."""
    return status >= 400 and curl_code != pycurl.E_OPERATION_TIMEDOUT
