"""The web console in a real browser: Playwright driving Debian's Chromium against `pgalert serve` as a login
holding only monitoring_inbound and monitoring_console, with the real dispatcher and the fake providers behind.
People are made with `pgalert user create` as an admin login, as the docs say."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests
from playwright import sync_api as playwright_api  # noqa: E402 - beside what it is for

from devtools.fake_providers import FakeProviders
from devtools.serve import start_serve
from tests.helpers import SEED_CRITICAL, child_environment

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
LIVE = 15_000  # ms a condition may take to show in the page: a ceiling, never a measure


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with playwright_api.sync_playwright() as playwright:
        # the flags Chromium needs on a closed network, as root, headless
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def console_login(db_url: str) -> Iterator[str]:
    """serve's login as the docs make it: monitoring_inbound and monitoring_console, nothing more."""
    login = f"pgalert_console_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE monitoring_inbound, monitoring_console')
    yield db_url.replace("postgresql://postgres@", f"postgresql://{login}@", 1)
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (login,))
        admin.execute(f'DROP ROLE "{login}"')


class Serve:
    def __init__(self, url: str, log: Path):
        self.url, self.log, self.port = url, log, None
        self.process: subprocess.Popen | None = None

    def start(self) -> Serve:
        self.process, base = start_serve(self.url, self.log, env={}, base_env=child_environment(), port=self.port)
        self.base = base
        self.port = int(base.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(15) == 0


@pytest.fixture
def serve(console_login: str, tmp_path: Path) -> Iterator[Serve]:
    server = Serve(console_login, tmp_path / "serve.log").start()
    yield server
    server.stop()
    assert PASSWORD not in server.log.read_text()


@pytest.fixture
def users(login_url) -> dict[str, str]:
    """A viewer, a responder and an admin, made at the CLI by an admin login."""
    admin_url = login_url("monitoring_admin")
    for login, role, name in (("vera", "viewer", "Vera Viewer"), ("rick", "responder", "Rick Responder"),
                              ("ada", "admin", "Ada Admin")):
        done = subprocess.run([sys.executable, "-m", "dispatcher", "user", "create", login, "--role", role,
                               "--name", name, "--password-stdin"], input=PASSWORD + "\n", text=True,
                              capture_output=True, env=child_environment(DATABASE_URL=admin_url), timeout=60)
        assert done.returncode == 0, done.stderr
    return {"vera": "Vera Viewer", "rick": "Rick Responder", "ada": "Ada Admin"}


def sign_in(browser, serve: Serve, login: str):
    page = browser.new_context(base_url=serve.base).new_page()
    page.goto("/console/")
    assert "/console/login" in page.url  # nothing without a session
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/console/$"))
    return page


def expect(locator):
    return playwright_api.expect(locator)


def raise_alert(conn, title: str, alert_type: str = "payment_failure", severity: str = "critical",
                source: str = "", details: str = "{}") -> int:
    return conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message, source, details) "
                        "VALUES (%s, %s, %s, '', %s, %s) RETURNING id",
                        (alert_type, severity, title, source, details)).fetchone()[0]


def test_a_wrong_password_is_refused_and_the_console_shows_nothing_without_a_session(browser, serve, users):
    page = browser.new_context(base_url=serve.base).new_page()
    page.goto("/console/")
    page.fill("input[name=login]", "rick")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("do not match")
    assert requests.get(serve.base + "/console/events", timeout=5, allow_redirects=False).status_code == 401
    assert requests.get(serve.base + "/console/alerts/1", timeout=5, allow_redirects=False).status_code == 303


def test_a_new_alert_appears_live_without_a_reload(browser, serve, users, conn):
    page = sign_in(browser, serve, "vera")
    expect(page.locator("td.empty")).to_be_visible()
    page.evaluate("window.__stayed = true")
    raise_alert(conn, "Checkout is failing live")
    expect(page.locator("tr.alert", has_text="Checkout is failing live")).to_be_visible(timeout=LIVE)
    assert page.evaluate("window.__stayed") is True  # the same page: swapped in, not reloaded


def test_acknowledge_from_the_list_tells_pagerduty_and_the_sla_row_gets_its_mtta(
        browser, serve, users, conn, fake: FakeProviders, start_dispatcher):
    start_dispatcher()
    alert_id = conn.execute(SEED_CRITICAL.rstrip(";") + " RETURNING id").fetchone()[0]
    fake.wait_for(lambda got: any(r.provider == "pagerduty" and r.json["event_action"] == "trigger" for r in got))
    page = sign_in(browser, serve, "rick")
    row = page.locator(f'tr.alert[data-alert="{alert_id}"]')
    expect(row.locator(".badge.ok", has_text="pagerduty")).to_be_visible(timeout=LIVE)
    row.locator("input[name=alert_id]").check()
    page.click("button[value=acknowledge]")
    expect(row).to_contain_text("by Rick Responder via console", timeout=LIVE)
    fake.wait_for(lambda got: any(r.provider == "pagerduty" and r.json["event_action"] == "acknowledge" for r in got))
    sla = conn.execute("SELECT acknowledged_by, acknowledged_at - detected_at FROM monitoring_sla_metrics "
                       "WHERE alert_id = %s", (alert_id,)).fetchone()
    assert sla[0] == "Rick Responder" and sla[1].total_seconds() >= 0


def test_acknowledge_then_resolve_from_the_detail_page_with_notes(browser, serve, users, conn):
    alert_id = raise_alert(conn, "Disk almost full", "disk_full", "warning", "db-1",
                           '{"runbook_url": "https://runbooks.example.com/disk", "labels": {"env": "prod"}}')
    page = sign_in(browser, serve, "ada")
    page.click(f'a[href="/console/alerts/{alert_id}"]')
    expect(page.locator("h1")).to_contain_text("Disk almost full")
    expect(page.locator("a", has_text="https://runbooks.example.com/disk")).to_have_attribute(
        "href", "https://runbooks.example.com/disk")
    page.fill("form[data-action=acknowledge] input[name=note]", "looking")
    page.click("form[data-action=acknowledge] button")
    expect(page.locator("ol.timeline")).to_contain_text("acknowledged by Ada Admin")
    page.fill("form[data-action=resolve] input[name=note]", "cleaned up")
    page.check("form[data-action=resolve] input[name=false_positive]")
    page.click("form[data-action=resolve] button")
    expect(page.locator("ol.timeline")).to_contain_text("via console (false positive): cleaned up")
    row = conn.execute("SELECT status, resolved_by, resolved_via, false_positive, acknowledge_note FROM "
                       "monitoring_alerts WHERE id = %s", (alert_id,)).fetchone()
    assert row == ("resolved", "Ada Admin", "console", True, "looking")


def test_a_viewer_sees_no_action_and_a_forged_post_as_viewer_is_refused(browser, serve, users, conn):
    alert_id = raise_alert(conn, "Viewer cannot touch this")
    page = sign_in(browser, serve, "vera")
    page.goto(f"/console/alerts/{alert_id}")
    expect(page.locator("h1")).to_contain_text("Viewer cannot touch this")
    assert page.locator("section.actions").count() == 0
    assert page.locator("button", has_text="Acknowledge").count() == 0
    csrf = page.locator("form[action='/console/logout'] input[name=csrf]").get_attribute("value")
    forged = page.request.post(f"/console/alerts/{alert_id}/acknowledge", form={"csrf": csrf})
    assert forged.status == 403 and "vera is a console viewer" in forged.text()
    assert conn.execute("SELECT status FROM monitoring_alerts WHERE id = %s", (alert_id,)).fetchone() == ("open",)


def test_a_post_without_the_csrf_token_is_refused(browser, serve, users, conn):
    alert_id = raise_alert(conn, "CSRF target")
    page = sign_in(browser, serve, "rick")
    for form in ({}, {"csrf": "0" * 64}):
        refused = page.request.post(f"/console/alerts/{alert_id}/acknowledge", form=form)
        assert refused.status == 403
    assert conn.execute("SELECT status FROM monitoring_alerts WHERE id = %s", (alert_id,)).fetchone() == ("open",)


def test_a_hostile_title_and_link_render_as_text(browser, serve, users, conn):
    title = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
    alert_id = raise_alert(conn, title, details='{"runbook_url": "javascript:window.__xss = 3"}')
    page = sign_in(browser, serve, "rick")
    expect(page.locator("tr.alert .title")).to_have_text(title)
    page.goto(f"/console/alerts/{alert_id}")
    expect(page.locator("h1")).to_contain_text("<script>")
    expect(page.locator("dl.details")).to_contain_text("javascript:window.__xss = 3")
    assert page.locator("a[href^='javascript:']").count() == 0
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert "unsafe-inline" not in page.request.get("/console/").headers["content-security-policy"]


def test_a_silence_made_with_its_preview_holds_the_next_match_and_never_the_resolve_of_one_already_paged(
        browser, serve, users, conn, fake: FakeProviders, start_dispatcher):
    start_dispatcher()
    paged = raise_alert(conn, "Deploy check failed", "deploy_check", "critical", "api")
    fake.wait_for(lambda got: any(r.provider == "pagerduty" and r.json["event_action"] == "trigger" for r in got))
    page = sign_in(browser, serve, "rick")
    page.goto(f"/console/silences/new?alert={paged}")
    preview = page.locator("#preview")
    expect(preview).to_contain_text("1 open alert would be silenced")
    page.fill("textarea[name=matchers]", 'alert_type=~"deploy_(check"')
    expect(preview.locator("[data-preview=error]")).to_be_visible()  # the regex does not compile
    page.fill("textarea[name=matchers]", 'alert_type="deploy_check"')
    expect(preview).to_contain_text("1 open alert would be silenced")
    page.fill("input[name=duration]", "1h")
    page.fill("input[name=comment]", "deploy of api 4.2")
    page.click("form.silence button[type=submit]")
    page.wait_for_url(re.compile(r"/console/silences$"))
    expect(page.locator("table.silences")).to_contain_text("deploy of api 4.2")
    held = raise_alert(conn, "Deploy check failed on web", "deploy_check", "critical", "web")
    assert conn.execute("SELECT status FROM monitoring_deliveries WHERE alert_id = %s AND provider = 'pagerduty'",
                        (held,)).fetchone() == ("held",)
    conn.execute("SELECT monitoring_resolve_alert(%s, 'rick')", (paged,))
    fake.wait_for(lambda got: any(r.provider == "pagerduty" and r.json["event_action"] == "resolve" for r in got))
    triggers = [r for r in fake.requests_for("pagerduty") if r.json["event_action"] == "trigger"]
    assert len(triggers) == 1  # the silenced alert was never paged


def test_the_page_catches_up_after_the_server_restarts(browser, serve, users, conn):
    page = sign_in(browser, serve, "vera")
    expect(page.locator("td.empty")).to_be_visible()
    page.evaluate("window.__stayed = true")
    serve.stop()
    raise_alert(conn, "Raised while serve was down")
    serve.start()
    expect(page.locator("tr.alert", has_text="Raised while serve was down")).to_be_visible(timeout=LIVE * 2)
    assert page.evaluate("window.__stayed") is True


def test_the_open_alerts_filter_lives_in_the_url(browser, serve, users, conn):
    raise_alert(conn, "Payments down", "payment_failure", "critical", details='{"labels": {"env": "prod"}}')
    raise_alert(conn, "Queue slow", "queue_lag", "warning", details='{"labels": {"env": "staging"}}')
    page = sign_in(browser, serve, "vera")
    page.goto("/console/?label=env%3Dstaging")
    expect(page.locator("tr.alert")).to_have_count(1)
    expect(page.locator("tr.alert")).to_contain_text("Queue slow")
    page.goto("/console/?severity=critical&q=payments")
    expect(page.locator("tr.alert")).to_have_count(1)
    expect(page.locator("tr.alert")).to_contain_text("Payments down")
    bad = page.goto("/console/?severity=urgent")
    assert bad.status == 400
    expect(page.locator(".error")).to_contain_text("severity is one of")
