"""The send path's HTTP client against a real local server: what reaches the wire and what comes back."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devtools import fake_smtp
from dispatcher import probes
from dispatcher.http import HttpClient, SendFailed, SendTimeout
from dispatcher.providers.base import HttpRequest, HttpResponse, MailRequest
from tests.certificates import self_signed


def send(client: HttpClient, request: HttpRequest | MailRequest) -> HttpResponse:
    """Submit and wait for the reply; raise what came back instead of one."""
    finished = threading.Event()
    outcome: list[HttpResponse | SendTimeout | SendFailed] = []

    def done(result: HttpResponse | SendTimeout | SendFailed, _seconds: float) -> None:
        outcome.append(result)
        finished.set()

    client.submit(request, done)
    assert finished.wait(30)
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]



class Server:
    """Records each request line, headers and body; answers as `reply` says for the path."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.client_ports: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                server.client_ports.append(self.client_address[1])
                if self.path.endswith("/slow"):
                    time.sleep(2)
                if self.path.endswith("/drop"):
                    self.close_connection = True
                    return
                status, headers, reply = 200, {"Content-Type": "text/plain"}, b"ok"
                if self.path.endswith("/limited"):
                    status, headers = 429, {"Retry-After": "7", "Content-Type": "text/plain"}
                if self.path.endswith("/moved"):
                    status, headers = 302, {"Location": "/elsewhere"}
                if self.path.endswith("/huge"):
                    reply = b"x" * 1_000_000
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_PUT = do_POST  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


@pytest.fixture
def client() -> Iterator[HttpClient]:
    running = HttpClient(4, 3, 5, 1024)
    yield running
    running.close()


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def post(url: str, body: bytes = b'{"a":1}', **headers: str) -> HttpRequest:
    return HttpRequest("POST", url, {"Content-Type": "application/json", **headers}, body)


def test_a_post_arrives_whole_with_its_headers_and_the_reply_comes_back(server, client):
    body = "é€😀 \x00 binary".encode() * 5000  # larger than libcurl's 100-continue threshold, with a NUL
    reply = send(client, post(server.url + "/p/limited", body, Authorization="Token t"))
    method, path, headers, received = server.seen[0]
    assert (method, path, received) == ("POST", "/p/limited", body)
    assert headers["authorization"] == "Token t" and headers["content-type"] == "application/json"
    assert "expect" not in headers and headers["user-agent"].startswith("pgalert/")
    assert reply.status == 429 and reply.headers["retry-after"] == "7" and reply.body == b"ok"


def test_connections_are_kept_alive_across_sends(server, client):
    for _ in range(3):
        send(client, post(server.url + "/p"))
    assert len(server.client_ports) == 3 and len(set(server.client_ports)) == 1


def test_other_methods_and_redirects_are_not_followed(server, client):
    reply = send(client, HttpRequest("PUT", server.url + "/p/moved", {}, b"x"))
    assert [(m, p) for m, p, _, _ in server.seen] == [("PUT", "/p/moved")]
    assert reply.status == 302 and reply.headers["location"] == "/elsewhere"


def test_a_huge_reply_is_read_but_only_its_start_kept(server, client):
    reply = send(client, post(server.url + "/p/huge"))
    assert reply.status == 200 and reply.body == b"x" * 1024


def test_a_slow_reply_times_out_and_a_closed_port_or_dropped_connection_fails(server, client):
    impatient = HttpClient(4, 3, 0.5, 1024)
    with pytest.raises(SendTimeout):
        send(impatient, post(server.url + "/p/slow"))
    impatient.close()
    closed = server.url.rsplit(":", 1)[0] + ":9"
    with pytest.raises(SendFailed, match="Failed to connect"):
        send(client, post(closed + "/p"))
    with pytest.raises(SendFailed, match="Empty reply"):  # on a fresh connection, so libcurl does not resend
        send(client, post(server.url + "/p/drop"))
    assert [path for _, path, _, _ in server.seen].count("/p/drop") == 1


def test_many_requests_at_once_each_get_their_own_reply(server, client):
    replies: dict[int, int] = {}
    finished = threading.Event()

    def done(number: int):
        def record(reply, _seconds):
            replies[number] = reply.status if not isinstance(reply, Exception) else -1
            if len(replies) == 40:
                finished.set()
        return record

    for number in range(40):
        client.submit(post(server.url + ("/p/limited" if number % 2 else "/p"), str(number).encode()), done(number))
    assert finished.wait(10)
    assert replies == {number: 429 if number % 2 else 200 for number in range(40)}
    assert sorted(int(body) for _, _, _, body in server.seen) == list(range(40))


def test_http_proxy_from_the_environment_is_used_and_no_proxy_is_honoured(server, client, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", server.url)  # our server plays the proxy: it sees absolute URIs
    monkeypatch.setenv("NO_PROXY", "direct.invalid")
    assert send(client, post("http://provider.invalid/v2/enqueue")).status == 200
    assert server.seen[0][1] == "http://provider.invalid/v2/enqueue"
    with pytest.raises(SendFailed):  # not sent to the proxy, so the unresolvable name fails
        send(client, post("http://direct.invalid/v2/enqueue"))
    assert len(server.seen) == 1


def test_health_probes_go_through_the_same_proxy(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", server.url)
    check = probes.Check(1, "production", "http://production.invalid/health", "POST", 200, 2.0)
    outcome = probes.run_check(probes.session(), check, {})
    assert outcome.status == 200 and outcome.error is None
    assert server.seen[0][:2] == ("POST", "http://production.invalid/health")


def test_a_request_libcurl_refuses_fails_alone_and_the_loop_goes_on(server, client):
    with pytest.raises(SendFailed, match="request not accepted"):
        send(client, post(server.url + "/p/\x00"))

    called = threading.Event()

    def broken_callback(_reply, _seconds):
        called.set()
        raise RuntimeError("a bug in whoever handles the reply")

    client.submit(post(server.url + "/p/first"), broken_callback)
    # the two sends run concurrently on the loop, so wait for the first to finish before sending the second:
    # the order of arrival is then fixed, and the second proves the loop outlived the first's callback
    assert called.wait(10)
    assert send(client, post(server.url + "/p/second")).status == 200
    assert [path for _, path, _, _ in server.seen] == ["/p/first", "/p/second"]


def test_a_request_built_on_the_loop_is_sent_skipped_or_failed_alone(server, client):
    built_on: list[str] = []
    outcomes: dict[str | None, object] = {}
    finished = threading.Event()

    def build(path: str | None):
        def make():
            built_on.append(threading.current_thread().name)
            if path is None:
                return None  # nothing to send after all: no request, and no call to done
            if path == "boom":
                raise ValueError("payload would not build")
            return post(server.url + path)
        return make

    def done(path: str | None):
        def record(reply, _seconds):
            outcomes[path] = reply
            if len(outcomes) == 2:
                finished.set()
        return record

    for path in ("/p/built", None, "boom"):
        client.submit(build(path), done(path))
    assert finished.wait(10)
    assert built_on == ["http", "http", "http"]
    assert set(outcomes) == {"/p/built", "boom"} and outcomes["/p/built"].status == 200
    assert isinstance(outcomes["boom"], SendFailed) and "request not built: ValueError" in str(outcomes["boom"])
    assert send(client, post(server.url + "/p/after")).status == 200
    assert [path for _, path, _, _ in server.seen] == ["/p/built", "/p/after"]


@pytest.fixture
def tls_server(tmp_path) -> Iterator[tuple[Server, str]]:
    """A server with a certificate of its own; the path of that certificate, to trust it as a CA bundle."""
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    running = Server(context)
    yield running, cert
    running.httpd.shutdown()
    running.httpd.server_close()


def test_https_is_verified_against_the_configured_ca_bundle(tls_server, monkeypatch):
    server, bundle = tls_server
    default = HttpClient(4, 3, 5, 1024)  # certifi's bundle does not know this certificate
    with pytest.raises(SendFailed, match="certificate"):
        send(default, post(server.url + "/p"))
    default.close()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", bundle)
    trusting = HttpClient(4, 3, 5, 1024)
    assert send(trusting, post(server.url + "/p/tls")).status == 200
    trusting.close()
    assert [path for _, path, _, _ in server.seen] == ["/p/tls"]


# ---- SMTP on the same loop ----------------------------------------------------------------------------------

@pytest.fixture
def mail_server(tmp_path, request, monkeypatch) -> Iterator[fake_smtp.FakeSmtp]:
    """A submission server (TLS as the test's `tls` parameter says, STARTTLS by default) whose certificate the
    client trusts."""
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    running = fake_smtp.FakeSmtp(cert, key, tls=getattr(request, "param", "starttls")).start()
    yield running
    running.stop()


def mail(server: fake_smtp.FakeSmtp, *recipients: str, password: str = fake_smtp.PASSWORD,
         starttls_required: bool = True) -> MailRequest:
    message = b"From: a@example.com\r\nTo: ops@example.com\r\nSubject: hello\r\n\r\nbody\r\n"
    return MailRequest(server.url + "/pgalert.test", "alerts@example.com", recipients or ("ops@example.com",), message,
                       fake_smtp.USERNAME, password, starttls_required)


@pytest.mark.parametrize("mail_server", ["starttls", "implicit"], indirect=True)
def test_mail_is_sent_over_tls_after_auth(mail_server):
    client = HttpClient(2, 3, 5, 1024)
    reply = send(client, mail(mail_server, "ops@example.com", "lead@example.org"))
    client.close()
    assert (reply.status, reply.body) == (250, b"250 2.0.0 Ok: queued")
    [received] = mail_server.received
    assert (received.mail_from, received.recipients, received.over_tls, received.authenticated_as) == (
        "alerts@example.com", ("ops@example.com", "lead@example.org"), True, fake_smtp.USERNAME)
    assert received.message["Subject"] == "hello"


@pytest.mark.parametrize(("recipient", "password", "status"), [
    ("refused@example.com", fake_smtp.PASSWORD, 550), ("busy@example.com", fake_smtp.PASSWORD, 451),
    ("ops@example.com", "wrong password", 535)])
def test_a_mail_server_refusal_comes_back_as_its_reply_code(mail_server, recipient, password, status):
    client = HttpClient(2, 3, 5, 1024)
    reply = send(client, mail(mail_server, recipient, password=password))
    client.close()
    assert reply.status == status and reply.body.startswith(str(status).encode())
    assert mail_server.received == []


@pytest.mark.parametrize("mail_server", ["none"], indirect=True)
def test_without_starttls_nothing_is_sent_unless_the_relay_is_allowed_to_be_plain(mail_server):
    client = HttpClient(2, 3, 5, 1024)
    with pytest.raises(SendFailed, match="curl error 64"):  # CURLE_USE_SSL_FAILED: no password, no alert in clear
        send(client, mail(mail_server))
    assert mail_server.received == []
    assert send(client, mail(mail_server, starttls_required=False)).status == 250  # this machine's own relay
    client.close()
    assert [r.over_tls for r in mail_server.received] == [False]


def test_mail_to_an_untrusted_certificate_is_refused(mail_server, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    client = HttpClient(2, 3, 5, 1024)
    with pytest.raises(SendFailed, match="certificate"):
        send(client, mail(mail_server))
    client.close()
    assert mail_server.received == []


@pytest.mark.parametrize("variable", ["DATABASE_URL", "SLACK_WEBHOOK_URL", "PAGERDUTY_INTEGRATION_KEY", "PGPASSWORD",
                                      "PGALERT_CHANNEL_SECRETS", "HOME", "production_url", "PGALERT_PROBE_"])
def test_a_health_check_reads_only_the_variables_meant_for_probes(server, variable):
    """An admin's check could name any of the dispatcher's variables as its URL (#22)."""
    env = {variable: server.url + "/health"}
    outcome = probes.run_check(probes.session(), probes.Check(1, "x", f"env:{variable}", "POST", 200, 2.0), env)
    assert outcome.status is None and "not a variable health checks may read" in outcome.error
    assert server.url not in outcome.error and not server.seen


def test_production_url_and_probe_variables_are_read_and_kept_out_of_errors(server):
    env = {"PRODUCTION_URL": server.url + "/health", "PGALERT_PROBE_API": "http://user:pw@127.0.0.1:1/health"}
    assert probes.run_check(probes.session(), probes.Check(1, "p", "env:PRODUCTION_URL", "POST", 200, 2.0), env).status == 200
    refused = probes.run_check(probes.session(), probes.Check(2, "a", "env:PGALERT_PROBE_API", "POST", 200, 2.0), env)
    assert refused.status is None and "pw" not in refused.error
    unset = probes.run_check(probes.session(), probes.Check(3, "b", "env:PGALERT_PROBE_GONE", "POST", 200, 2.0), env)
    assert unset.error == "PGALERT_PROBE_GONE is not set on this dispatcher"
