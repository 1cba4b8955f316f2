"""The send path's HTTP client: one thread runs every request through a libcurl multi handle (pycurl). Mail
goes the same way: libcurl speaks SMTP too, so a message to a mail server is one more transfer on the same loop,
with the same timeouts, CA bundle and `done` callback, and no thread of its own; what is SMTP's own (its
options, how its replies read) is in dispatcher.smtp.

Why: in Python, the HTTP request is most of a delivery's cost, and threads make it worse, because each thread
must win the interpreter lock back for every piece of a reply. Measured against a keep-alive server in
another process, 6,000 requests, CPU per request: urllib3 on 16 threads 317-343 us; libcurl on 16 threads
107-125 us; one libcurl multi handle on one thread 12-14 us. So requests are handed to one event loop that
waits on all connections at once, and each finished request is passed to its `done` callback on that thread.

What requests gave the send path is kept: HTTP(S)_PROXY and NO_PROXY, decided as requests decides them
(libcurl's own, slightly different, reading of the environment is switched off); REQUESTS_CA_BUNDLE or
CURL_CA_BUNDLE, else certifi's bundle; no redirects; keep-alive; no retries of ours (those live in the
database); a bounded time per request.

libcurl resends a request once, at once, on a fresh connection when a kept-alive connection dies before any
byte of reply: that is what a connection the server closed while idle looks like. A second death, or a reply
cut off midway, is a failed request.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pycurl
import requests.certs
import requests.utils

from dispatcher import __version__, logs, smtp
from dispatcher.providers.base import HttpRequest, HttpResponse, MailRequest, Request

MAIL_POLL_MS = 5


class SendTimeout(Exception):
    """No complete answer within the timeout: worth retrying."""


class SendFailed(Exception):
    """The request did not complete (refused, reset, dropped mid-reply, bad TLS): worth retrying."""


# what a request's `done` receives: the reply, or the reason there is none; and the seconds it took
Done = Callable[[HttpResponse | SendTimeout | SendFailed, float], None]
# a request to be built on the client's thread; None when, after all, there is nothing to send
Build = Callable[[], Request | None]


def ca_bundle() -> str:
    """The CA bundle TLS is verified against: REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, else certifi's."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or requests.certs.where()


class _Transfer:
    """One request on one libcurl handle: where its reply goes as it arrives."""

    __slots__ = ("done", "mail", "started", "body", "header_lines", "room")

    def __init__(self, done: Done, body_max: int, mail: bool = False):
        self.done = done
        self.mail = mail  # an SMTP transfer: header_lines are the server's replies
        self.started = time.perf_counter()
        self.body = bytearray()
        self.header_lines: list[bytes] = []
        self.room = body_max

    def on_body(self, chunk: bytes) -> None:
        if self.room > 0:  # beyond it, read and dropped: no provider reply needs more
            self.body.extend(chunk[: self.room])
            self.room -= len(chunk)

    def headers(self) -> dict[str, str]:
        """The final response's headers, lower-cased (after a 100 Continue or a proxy's CONNECT reply)."""
        headers: dict[str, str] = {}
        for raw in self.header_lines:
            text = raw.decode("iso-8859-1").rstrip("\r\n")
            if text.startswith("HTTP/"):
                headers.clear()
            elif ":" in text:
                name, value = text.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return headers


class HttpClient:
    """Runs up to `concurrency` requests at once on its own thread; `submit` from any thread."""

    def __init__(self, concurrency: int, connect_timeout: float, timeout: float, response_body_max: int):
        self._connect_ms = max(int(min(connect_timeout, timeout) * 1000), 1)
        self._timeout_ms = max(int(timeout * 1000), 1)
        self._body_max = response_body_max
        self._ca_bundle = ca_bundle()
        self._proxy_for: dict[tuple[str, str], str] = {}  # (scheme, host:port) -> proxy URL, "" for none
        self._multi = pycurl.CurlMulti()
        self._idle = [pycurl.Curl() for _ in range(concurrency)]
        self._running: dict[pycurl.Curl, _Transfer] = {}
        self._mail_running = 0
        # submitted, not yet started: appended by any thread, taken only by the loop (deque ops are atomic)
        self._inbox: collections.deque[tuple[Request | Build, Done]] = collections.deque()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._woken = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="http", daemon=True)
        self._thread.start()

    def submit(self, request: Request | Build, done: Done) -> None:
        """Send `request`; `done(reply or error, seconds)` is then called on the client's thread.

        `request` may instead be a function that builds it: it runs on the client's thread when a connection is
        free, and the submitting thread goes back to its own work at once. That matters under the interpreter
        lock: a thread that goes on building the rest of a batch holds the lock the client needs to send the
        first request. When the function returns None, nothing is sent and `done` is not called."""
        self._inbox.append((request, done))
        if not self._woken:  # one wake-up byte per batch of submissions is enough
            self._wake()

    def close(self) -> None:
        """Stop the loop; requests still running are abandoned (their deliveries' leases cover them)."""
        self._closed = True
        self._wake()
        self._thread.join(1)

    def _wake(self) -> None:
        self._woken = True
        with contextlib.suppress(BlockingIOError):  # the pipe is full of wake-ups already
            os.write(self._wake_write, b"x")

    # ---- the loop -------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._closed:
            try:
                self._turn()
            except Exception as error:  # noqa: BLE001 - a dead loop would strand every later delivery
                logs.error("http loop error; going on", error=f"{type(error).__name__}: {error}")
                time.sleep(0.1)

    def _turn(self) -> None:
        """Start what waits, let libcurl work, hand out what finished, then sleep until a socket or a
        submission needs us (or libcurl's own timer runs out)."""
        self._start_submitted()
        while self._multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        self._finish_completed()
        if self._inbox and self._idle:
            return  # handles freed up: start the next requests before sleeping
        timeout_ms = self._multi.timeout() if self._running else -1
        if timeout_ms < 0:
            timeout_ms = 1000 if self._running else None
        if self._mail_running and timeout_ms is not None:
            # An SMTP reply that arrived with the TLS record before it sits in OpenSSL's buffer, where no poll of
            # the socket sees it (seen: a conversation stalled at EHLO after STARTTLS until the connect timeout).
            # Mail is rare, so while a message is in flight the loop looks again every few ms.
            timeout_ms = min(timeout_ms, MAIL_POLL_MS)
        readable, writable, broken = self._multi.fdset()
        wanted: dict[int, int] = {self._wake_read: select.POLLIN}
        for fd in readable:
            wanted[fd] = wanted.get(fd, 0) | select.POLLIN
        for fd in writable:
            wanted[fd] = wanted.get(fd, 0) | select.POLLOUT
        for fd in broken:
            wanted[fd] = wanted.get(fd, 0) | select.POLLPRI
        poller = select.poll()  # built afresh: libcurl opens and closes connections between turns
        for fd, mask in wanted.items():
            poller.register(fd, mask)
        poller.poll(timeout_ms)

    def _start_submitted(self) -> None:
        # Drained, then the flag cleared, then the inbox read: a submission either is read below or sees the flag
        # clear and writes a byte that wakes the next poll. Clearing first could eat the only byte of a
        # submission made in between, and leave a later one, which saw the flag still set, waiting.
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_read, 4096):
                pass
        self._woken = False
        first = True
        while self._inbox and self._idle:
            self._start(*self._inbox.popleft())
            if first:
                # the first request goes out now, before the rest of its batch is prepared (measured: latency
                # p50 0.93 against 1.02 ms, eight alternating runs); once per turn, as each call to perform
                # visits every running transfer
                first = False
                while self._multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                    pass

    def _start(self, request: Request | Build, done: Done) -> None:
        if callable(request):
            try:
                request = request()
            except Exception as error:  # noqa: BLE001 - one bad build must not stop the loop
                self._call(done, SendFailed(f"request not built: {type(error).__name__}: {error}"), 0.0)
                return
            if request is None:
                return
        handle = self._idle.pop()
        transfer = _Transfer(done, self._body_max, isinstance(request, MailRequest))
        try:
            self._configure(handle, request, transfer)
            self._multi.add_handle(handle)
        except Exception as error:  # noqa: BLE001 - a request libcurl refuses must not stop the loop
            self._idle.append(handle)
            self._call(done, SendFailed(f"request not accepted: {type(error).__name__}: {error}"), 0.0)
            return
        self._running[handle] = transfer
        self._mail_running += transfer.mail

    def _finish_completed(self) -> None:
        while True:
            queued, succeeded, failed = self._multi.info_read()
            for handle in succeeded:
                status = handle.getinfo(pycurl.RESPONSE_CODE)
                transfer = self._release(handle)
                reply = smtp.reply(status, transfer.header_lines) if transfer.mail \
                    else HttpResponse(status, transfer.headers(), bytes(transfer.body))
                self._call(transfer.done, reply, time.perf_counter() - transfer.started)
            for handle, code, message in failed:
                status = handle.getinfo(pycurl.RESPONSE_CODE)
                transfer = self._release(handle)
                if transfer.mail and smtp.refused(status, code):
                    result: HttpResponse | SendTimeout | SendFailed = smtp.reply(status, transfer.header_lines)
                elif code == pycurl.E_OPERATION_TIMEDOUT:
                    result = SendTimeout(message)
                else:
                    result = SendFailed(f"curl error {code}: {message}")
                self._call(transfer.done, result, time.perf_counter() - transfer.started)
            if not queued:
                return

    def _release(self, handle: pycurl.Curl) -> _Transfer:
        self._multi.remove_handle(handle)
        self._idle.append(handle)
        transfer = self._running.pop(handle)
        self._mail_running -= transfer.mail
        return transfer

    @staticmethod
    def _call(done: Done, result: HttpResponse | SendTimeout | SendFailed, seconds: float) -> None:
        try:
            done(result, seconds)
        except Exception as error:  # noqa: BLE001 - the loop serves every other request too
            logs.error("handling a reply failed", error=f"{type(error).__name__}: {error}")

    def _configure(self, handle: pycurl.Curl, request: Request, transfer: _Transfer) -> None:
        handle.reset()  # forgets the last request's options; connections live in the multi handle
        handle.setopt(pycurl.URL, request.url)
        handle.setopt(pycurl.NOSIGNAL, 1)  # libcurl must not use SIGALRM in a threaded program
        handle.setopt(pycurl.CONNECTTIMEOUT_MS, self._connect_ms)
        handle.setopt(pycurl.TIMEOUT_MS, self._timeout_ms)
        handle.setopt(pycurl.CAINFO, self._ca_bundle)
        # an HTTP reply's headers, or an SMTP server's reply lines
        handle.setopt(pycurl.HEADERFUNCTION, transfer.header_lines.append)
        if isinstance(request, MailRequest):
            smtp.configure(handle, request)
        else:
            self._http_options(handle, request, transfer)

    def _http_options(self, handle: pycurl.Curl, request: HttpRequest, transfer: _Transfer) -> None:
        handle.setopt(pycurl.PROXY, self._proxy(request.url))
        handle.setopt(pycurl.NOPROXY, "")  # NO_PROXY was already applied in _proxy
        handle.setopt(pycurl.USERAGENT, f"pgalert/{__version__}")
        # "Expect:" stops libcurl waiting for 100 Continue before a large body; providers don't send it
        handle.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in request.headers.items()]
                      + ["Expect:"])
        if request.method != "POST":
            handle.setopt(pycurl.CUSTOMREQUEST, request.method)
        if request.method == "POST" or request.body:
            handle.setopt(pycurl.POSTFIELDS, request.body)
        handle.setopt(pycurl.WRITEFUNCTION, transfer.on_body)

    def _proxy(self, url: str) -> str:
        """The proxy HTTP(S)_PROXY and NO_PROXY name for this scheme and host, or "" for a direct connection.
        Read once per host: the environment does not change under a running daemon."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        proxy = self._proxy_for.get(key)
        if proxy is None:
            proxy = self._proxy_for[key] = requests.utils.select_proxy(
                url, requests.utils.get_environ_proxies(url)) or ""
        return proxy
