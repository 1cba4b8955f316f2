"""The web console in a real browser: Playwright driving Debian's Chromium against `pgalert serve` as a login
holding only monitoring_inbound and monitoring_console, with the real dispatcher and the fake providers behind.
People are made with `pgalert user create` as an admin login, as the docs say."""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright import sync_api as playwright_api  # noqa: E402 - beside what it is for

from devtools.fake_providers import FakeProviders
from devtools.serve import start_serve
from dispatcher.console.auth import hash_password
from dispatcher.inbound.verify import new_token, token_sha256
from tests.helpers import SEED_CRITICAL, child_environment, make_schedule

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
def console_login(login_url) -> str:
    """serve's login as the docs make it: monitoring_inbound and monitoring_console, nothing more."""
    return login_url("monitoring_inbound", "monitoring_console")


class Serve:
    def __init__(self, url: str, log: Path, *args: str, env: dict[str, str] | None = None, host: str = "127.0.0.1"):
        self.url, self.log, self.port, self.args, self.env, self.host = url, log, None, args, env or {}, host
        self.process: subprocess.Popen | None = None

    def start(self) -> Serve:
        self.process, base = start_serve(self.url, self.log, *self.args, env=self.env, base_env=child_environment(),
                                         port=self.port, host=self.host)
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


USERS = (("vera", "viewer", "Vera Viewer"), ("rick", "responder", "Rick Responder"), ("ada", "admin", "Ada Admin"))


@pytest.fixture(scope="session")
def password_hash() -> str:
    return hash_password(PASSWORD)  # argon2 is slow on purpose: once per run


@pytest.fixture
def users(connect, password_hash) -> dict[str, str]:
    """A viewer, a responder and an admin, made by an admin login (at the CLI in the test below)."""
    admin = connect("monitoring_admin")
    for login, role, name in USERS:
        admin.execute("SELECT monitoring_console_save_user(%s, %s, %s, %s)", (login, name, role, password_hash))
    return {login: name for login, _, name in USERS}


def test_an_admin_makes_users_at_the_cli_and_they_sign_in(browser, serve, login_url):
    admin_url = login_url("monitoring_admin")
    for login, role, name in USERS[:2]:
        done = subprocess.run([sys.executable, "-m", "dispatcher", "user", "create", login, "--role", role,
                               "--name", name, "--password-stdin"], input=PASSWORD + "\n", text=True,
                              capture_output=True, env=child_environment(DATABASE_URL=admin_url), timeout=60)
        assert done.returncode == 0, done.stderr
    listed = subprocess.run([sys.executable, "-m", "dispatcher", "user", "list", "--format", "csv"], text=True,
                            capture_output=True, env=child_environment(DATABASE_URL=admin_url), timeout=60)
    assert "rick,Rick Responder,responder" in listed.stdout and "argon2" not in listed.stdout
    page = sign_in(browser, serve, "rick")
    expect(page.locator(".who")).to_contain_text("Rick Responder · responder")
    disabled = subprocess.run([sys.executable, "-m", "dispatcher", "user", "disable", "rick"], text=True,
                              capture_output=True, env=child_environment(DATABASE_URL=admin_url), timeout=60)
    assert disabled.returncode == 0, disabled.stderr
    page.reload()
    assert "/console/login" in page.url  # the session ended with the user


def sign_in(browser, serve: Serve, login: str, **context: object):
    """A page of a new browser context (`context`: its time zone, locale, viewport), signed in as `login`."""
    page = browser.new_context(base_url=serve.base, **context).new_page()
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


def test_a_change_heard_while_the_rows_are_being_fetched_is_shown_after_them(browser, serve, users, conn):
    """A slow fetch of the rows (held here by the test, not by the product) answers with what it read before a
    second change, and that change's event lands while it is in flight: the page must fetch again, so a
    resolved alert leaves the list and a new one appears, without a reload and without a third change."""
    page = sign_in(browser, serve, "vera")
    expect(page.locator("td.empty")).to_be_visible()
    old = raise_alert(conn, "Old news, about to be resolved")
    expect(page.locator("tr.alert", has_text="Old news")).to_be_visible(timeout=LIVE)
    rows_url = page.locator("[hx-get^='/console/alerts/rows']").get_attribute("hx-get")
    before = page.request.get(rows_url).text()  # the rows as read before both changes: what a slow fetch answers
    assert "Old news" in before
    page.evaluate("window.__stayed = true; window.__heard = 0;"
                  "document.addEventListener('htmx:sseMessage', function () { window.__heard++; })")
    held: list[playwright_api.Route] = []
    page.route("**/console/alerts/rows*", lambda route: route.continue_() if held else held.append(route))

    conn.execute("SELECT monitoring_resolve_alert(%s, 'rick')", (old,))
    page.wait_for_function("() => window.__heard >= 1", timeout=LIVE)  # its fetch is now in flight, held
    raise_alert(conn, "New trouble while fetching")
    page.wait_for_function("() => window.__heard >= 2", timeout=LIVE)  # heard while the first fetch is still open
    deadline = time.monotonic() + LIVE / 1000
    while not held:  # the route handler runs when Playwright's loop next turns
        assert time.monotonic() < deadline, "the page never fetched its rows after the first change"
        page.wait_for_timeout(20)
    held[0].fulfill(status=200, content_type="text/html; charset=utf-8", body=before)

    expect(page.locator("tr.alert", has_text="New trouble while fetching")).to_be_visible(timeout=LIVE)
    expect(page.locator("tr.alert", has_text="Old news")).to_have_count(0, timeout=LIVE)
    assert page.evaluate("window.__stayed") is True


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


def test_on_call_shows_who_is_on_now_and_a_responder_adds_an_override_with_the_databases_sentence_on_a_mistake(
        browser, serve, users, conn):
    make_schedule(conn, "payments", "Europe/Berlin", ["Alice", "Bob"])
    on_now = conn.execute("SELECT person FROM monitoring_who_is_on_call('payments')").fetchone()[0]
    other = "Bob" if on_now == "Alice" else "Alice"
    page = sign_in(browser, serve, "rick")
    page.goto("/console/oncall")
    card = page.locator('section.schedule[data-schedule="payments"]')
    expect(card.locator("p.now strong")).to_have_text(on_now)
    assert card.locator("table.shifts tbody tr").count() >= 4  # four weeks of weekly shifts
    page.select_option("form.override select[name=person]", other)
    page.fill("form.override input[name=duration]", "2h")
    page.fill("form.override input[name=reason]", "swap")
    page.click("form.override button[type=submit]")
    page.wait_for_url(re.compile(r"/console/oncall$"))
    expect(card.locator("p.now strong")).to_have_text(other)
    expect(card.locator("p.now .badge")).to_have_text("override")
    page.select_option("form.override select[name=person]", on_now)
    page.fill("form.override input[name=duration]", "1h")
    page.click("form.override button[type=submit]")
    expect(page.locator(".error")).to_contain_text("already has override")


def test_the_sla_page_shows_the_sql_functions_figures_and_its_csv_is_the_same(browser, serve, users, conn):
    for minutes_ago, ack_after, resolve_after in ((180, 2, 30), (150, 6, 20), (120, 4, 45)):
        alert_id = conn.execute(
            "INSERT INTO monitoring_alerts (alert_type, severity, title, created_at, occurred_at) "
            "VALUES ('payment_failure', 'critical', 'x', now() - make_interval(mins => %(m)s), "
            "now() - make_interval(mins => %(m)s + 1)) RETURNING id", {"m": minutes_ago}).fetchone()[0]
        conn.execute("SELECT monitoring_acknowledge_alert(%s, 'alice', NULL, now() - make_interval(mins => %s))",
                     (alert_id, minutes_ago - ack_after))
        conn.execute("SELECT monitoring_resolve_alert(%s, 'alice', NULL, false, now() - make_interval(mins => %s))",
                     (alert_id, minutes_ago - resolve_after))
    page = sign_in(browser, serve, "vera")
    page.goto("/console/sla")
    for hours in (24, 168, 720):
        expected = {metric: p50 for metric, p50 in conn.execute(
            "SELECT metric, p50 FROM monitoring_get_sla_summary(%s)", (hours,)).fetchall()}
        for metric in ("mttd", "mtta", "mttr"):
            shown = page.locator(f'tr[data-metric="{metric}"] td[data-hours="{hours}"] .value').get_attribute("data-p50")
            assert shown == str(expected[metric]), (hours, metric)
    assert 239 <= expected["mtta"] <= 241  # the median of 2, 4 and 6 minutes: the data are what the test meant
    assert page.locator('figure[data-chart="mtta"] polyline').count() == 2
    csv = page.request.get("/console/sla.csv?hours=24")
    assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text().strip().splitlines()
    sql_rows = conn.execute("SELECT metric, samples FROM monitoring_get_sla_summary(24)").fetchall()
    assert [line.split(",")[:3:2] for line in lines[1:]] == [[m, str(s)] for m, s in sql_rows]


def test_channels_show_success_rates_and_the_last_error_and_never_a_secret(browser, serve, users, conn):
    conn.execute(SEED_CRITICAL)
    delivery = conn.execute("SELECT id FROM monitoring_deliveries WHERE provider = 'pagerduty'").fetchone()[0]
    conn.execute("""INSERT INTO monitoring_delivery_attempts (delivery_id, attempt, dispatcher, started_at, finished_at,
                    outcome, http_status, error) VALUES
                    (%(d)s, 1, 'x', now() - interval '10 minutes', now() - interval '10 minutes', 'retry', 503, 'HTTP 503 busy'),
                    (%(d)s, 2, 'x', now() - interval '5 minutes', now() - interval '5 minutes', 'succeeded', 202, NULL)""",
                 {"d": delivery})
    conn.execute("INSERT INTO monitoring_providers (provider, kind, secret_refs, description) VALUES "
                 "('pagerduty_payments', 'pagerduty', '{\"routing_key\": \"env:PD_KEY_PAYMENTS\"}', 'payments team')")
    page = sign_in(browser, serve, "vera")
    page.goto("/console/channels")
    row = page.locator('tr[data-channel="pagerduty"]')
    expect(row).to_contain_text("50.0%")
    expect(row).to_contain_text("HTTP 503 busy")
    expect(page.locator('tr[data-channel="pagerduty_payments"]')).to_contain_text("payments team")
    assert "PD_KEY_PAYMENTS" not in page.content()


def test_an_admin_disables_a_rule_a_responder_cannot_and_a_backtest_says_what_would_have_fired(
        browser, serve, users, conn):
    # evaluated every 5 minutes, so the week's backtest is 2,016 steps, not 10,080: within serve's statement
    # timeout on a loaded machine too (5 events in 5 seconds fire once whatever the steps' alignment)
    conn.execute("INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, window_size, threshold, severity, "
                 "evaluate_every) VALUES ('checkout_errors', 'count', 'checkout_error', interval '5 minutes', 3, "
                 "'critical', interval '5 minutes')")
    conn.execute("INSERT INTO monitoring_events (event_type, occurred_at) "
                 "SELECT 'checkout_error', now() - interval '2 hours' + n * interval '1 second' FROM generate_series(1, 5) AS n")
    page = sign_in(browser, serve, "rick")
    page.goto("/console/rules")
    # who runs the rules: here the dispatchers would, as this database is not pg_cron's (#37, 1)
    expect(page.locator("p.scheduler")).to_contain_text("pg_cron cannot: pg_cron runs in database pgalert")
    row = page.locator('tr[data-rule="checkout_errors"]')
    expect(row).to_contain_text("enabled")
    assert row.locator("button", has_text="Disable").count() == 0
    row.locator("a", has_text="Backtest").click()
    expect(page.locator('[data-backtest="checkout_errors"]')).to_contain_text("1 time checkout_errors would have fired")
    admin = sign_in(browser, serve, "ada")
    admin.goto("/console/rules")
    admin.locator('tr[data-rule="checkout_errors"] button', has_text="Disable").click()
    expect(admin.locator('tr[data-rule="checkout_errors"]')).to_contain_text("disabled")
    assert conn.execute("SELECT enabled FROM monitoring_alert_rules WHERE rule_name = 'checkout_errors'"
                        ).fetchone() == (False,)


def test_an_admin_makes_a_weekly_maintenance_window_in_its_time_zone_and_a_responder_cannot(
        browser, serve, users, conn):
    page = sign_in(browser, serve, "ada")
    page.goto("/console/windows")
    form = page.locator("form.window")
    form.locator("input[name=name]").fill("saturday_patching")
    form.locator("textarea[name=matchers]").fill('alert_type="db_down"')
    form.locator("input[name=time_zone]").fill("Europe/Berlin")
    form.locator("input[name=kind][value=weekly]").check()
    form.locator("input[name=days][value='6']").check()
    form.locator("input[name=start_time]").fill("02:00")
    form.locator("input[name=duration]").fill("4h")
    form.locator("input[name=comment]").fill("patching")
    form.locator("button[type=submit]").click()
    row = page.locator('tr[data-window="saturday_patching"]')
    expect(row).to_contain_text("Sat 02:00 for 04:00:00 (Europe/Berlin)")
    stored = conn.execute("SELECT days_of_week, start_time::text, time_zone, created_by FROM monitoring_maintenance_windows"
                          ).fetchone()
    assert stored[:3] == ([6], "02:00:00", "Europe/Berlin") and stored[3].endswith(" for Ada Admin (console)")
    form.locator("input[name=name]").fill("bad_zone")
    form.locator("textarea[name=matchers]").fill('alert_type="x"')
    form.locator("input[name=time_zone]").fill("Mars/Olympus")
    form.locator("button[type=submit]").click()
    expect(page.locator(".error")).to_be_visible()
    responder = sign_in(browser, serve, "rick")
    responder.goto("/console/windows")
    expect(responder.locator('tr[data-window="saturday_patching"]')).to_be_visible()
    assert responder.locator("form.window").count() == 0
    csrf = responder.locator("form[action='/console/logout'] input[name=csrf]").get_attribute("value")
    forged = responder.request.post("/console/windows/saturday_patching/enabled", form={"csrf": csrf, "enabled": "false"})
    assert forged.status == 403
    assert conn.execute("SELECT enabled FROM monitoring_maintenance_windows").fetchone() == (True,)


def test_a_responder_extends_a_silence_and_expires_it(browser, serve, users, conn):
    page = sign_in(browser, serve, "rick")
    page.goto("/console/silences/new")
    page.fill("textarea[name=matchers]", 'alert_type="deploy_check"')
    page.fill("input[name=duration]", "1h")
    page.fill("input[name=comment]", "deploy")
    page.click("form.silence button[type=submit]")
    page.wait_for_url(re.compile(r"/console/silences$"))
    page.fill("form.extend input[name=duration]", "5h")
    page.click("form.extend button")
    page.wait_for_url(re.compile(r"/console/silences$"))
    hours = conn.execute("SELECT extract(EPOCH FROM ends_at - now()) / 3600 FROM monitoring_silences").fetchone()[0]
    assert 4.9 < hours <= 5
    page.locator("button", has_text="Expire").click()
    expect(page.locator("table.silences .badge").first).to_have_text("expired")


def test_the_keyboard_moves_and_acknowledges_and_times_show_in_the_viewers_zone(browser, serve, users, conn):
    older = raise_alert(conn, "Older alert", "queue_lag")
    newer = raise_alert(conn, "Newer alert", "disk_full")
    page = sign_in(browser, serve, "rick", timezone_id="Asia/Tokyo", locale="en-GB")
    page.keyboard.press("j")
    page.keyboard.press("j")
    expect(page.locator(f'tr.alert[data-alert="{older}"]')).to_have_class(re.compile("selected"))
    page.keyboard.press("a")
    expect(page.locator(f'tr.alert[data-alert="{older}"]')).to_contain_text("by Rick Responder via console",
                                                                            timeout=LIVE)
    assert conn.execute("SELECT status FROM monitoring_alerts WHERE id = %s", (newer,)).fetchone() == ("open",)
    page.goto(f"/console/alerts/{older}")
    stamp = page.locator("ol.timeline time").first
    utc = conn.execute("SELECT to_char(created_at AT TIME ZONE 'UTC', 'HH24:MI:SS'), "
                       "to_char(created_at AT TIME ZONE 'Asia/Tokyo', 'HH24:MI:SS') FROM monitoring_alerts WHERE id = %s",
                       (older,)).fetchone()
    expect(stamp).to_have_text(utc[1])  # Tokyo's clock, nine hours ahead
    assert utc[0] in stamp.get_attribute("title")  # UTC on hover
    page.keyboard.press("?")
    expect(page.locator("dialog#keys")).to_be_visible()


def test_the_alerts_page_fits_a_phone(browser, serve, users, conn):
    raise_alert(conn, "A rather long alert title that must wrap on a narrow screen instead of widening the page",
                details='{"labels": {"env": "production", "region": "eu-central-1", "service": "checkout-api"}}')
    page = sign_in(browser, serve, "vera", viewport={"width": 375, "height": 740})
    expect(page.locator("tr.alert")).to_have_count(1)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 375


def test_screenshots_of_the_main_pages(browser, serve, users, conn, tmp_path):
    """The README's pictures come from here: `make screenshots` writes them to docs/screenshots/."""
    target = Path(os.environ["PGALERT_SCREENSHOTS"]) if os.environ.get("PGALERT_SCREENSHOTS") else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    make_schedule(conn, "payments", "Europe/Berlin", ["Alice", "Bob"])
    first = raise_alert(conn, "Checkout error rate above 5%", "checkout_errors", "critical", "checkout-api",
                        '{"labels": {"env": "prod", "team": "payments"}, "runbook_url": "https://runbooks.example.com/checkout"}')
    raise_alert(conn, "Disk 92% on db-1", "disk_full", "warning", "db-1", '{"labels": {"env": "prod"}}')
    raise_alert(conn, "Email queue 4 minutes behind", "queue_lag", "info", "mailer")
    conn.execute("SELECT monitoring_acknowledge_alert(%s, 'Alice', 'looking')", (first,))
    page = sign_in(browser, serve, "ada")
    page.set_viewport_size({"width": 1280, "height": 720})
    shots = {"alerts": "/console/", "alert": f"/console/alerts/{first}", "silence": f"/console/silences/new?alert={first}",
             "oncall": "/console/oncall", "sla": "/console/sla"}
    for name, path in shots.items():
        page.goto(path)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=target / f"{name}.png")
        assert (target / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


SSO = ("--console-auth-header", "X-Forwarded-Email")


@pytest.fixture
def single_sign_on(conn) -> None:
    """What an admin does to let serve open sessions for whom its proxy vouches (#35, 3)."""
    conn.execute("UPDATE monitoring_settings SET value = 'on' WHERE setting = 'console_single_sign_on'")


def test_single_sign_on_opens_no_session_until_an_admin_turns_it_on_in_the_database(console_login, users, conn,
                                                                                  tmp_path):
    """serve's login may leak: a trusted proxy's header alone vouches for nobody while the setting is off."""
    server = Serve(console_login, tmp_path / "serve.log", *SSO, "--console-trusted-proxies", "127.0.0.1").start()
    try:
        for login in ("ada", "Rick"):
            response = vouched(server.base, login)
            assert response.status_code == 303 and "pgalert_session" not in response.headers.get("set-cookie", "")
        conn.execute("UPDATE monitoring_settings SET value = 'on' WHERE setting = 'console_single_sign_on'")
        assert vouched(server.base, "ada").status_code == 200
    finally:
        server.stop()
    assert "single sign-on refused by the database" in server.log.read_text()


def vouched(base: str, login: str, **headers: str) -> requests.Response:
    """/console/ asked for with the single sign-on header naming `login` (headers' _ are -)."""
    return requests.get(base + "/console/", headers={"X-Forwarded-Email": login,
                                                     **{k.replace("_", "-"): v for k, v in headers.items()}},
                        timeout=10, allow_redirects=False)


# The proxy is at 10.0.0.x; this test, like any local process, connects from 127.0.0.1 and claims to be it in
# X-Forwarded-For, which uvicorn believes from 127.0.0.1 (its default) or from whatever FORWARDED_ALLOW_IPS says
@pytest.mark.parametrize(("proxies", "forwarded_allow_ips"), [("10.0.0.5", None), ("10.0.0.5", "*"),
                                                              ("10.0.0.0/8", "127.0.0.1, 10.0.0.1")])
def test_single_sign_on_is_never_believed_from_an_address_that_a_header_claims(console_login, users, single_sign_on, conn, tmp_path,
                                                                               proxies, forwarded_allow_ips):
    env = {"FORWARDED_ALLOW_IPS": forwarded_allow_ips} if forwarded_allow_ips else {}
    server = Serve(console_login, tmp_path / "serve.log", *SSO, "--console-trusted-proxies", proxies, env=env).start()
    try:
        for claim in ({}, {"X_Forwarded_For": "10.0.0.5"}, {"X_Forwarded_For": "198.51.100.7, 10.0.0.5"},
                      {"X_Forwarded_For": "10.0.0.9, 10.0.0.1"}, {"X_Forwarded_For": "10.0.0.5", "X_Real_IP": "10.0.0.5"},
                      {"Forwarded": "for=10.0.0.5"}):
            response = vouched(server.base, "ada", **claim)
            assert response.status_code == 303 and "/console/login" in response.headers["location"], claim
            assert "pgalert_session" not in response.headers.get("set-cookie", ""), claim
    finally:
        server.stop()
    assert conn.execute("SELECT count(*) FROM monitoring_console_sessions").fetchone() == (0,)


def test_single_sign_on_through_a_proxy_on_this_machine_that_adds_x_forwarded_for(console_login, users, single_sign_on, tmp_path):
    """oauth2-proxy, nginx and Envoy add the browser's address to X-Forwarded-For: the proxy is still the peer."""
    server = Serve(console_login, tmp_path / "serve.log", *SSO, "--console-trusted-proxies", "127.0.0.1").start()
    try:
        for forwarded_for in ("", "203.0.113.9", "203.0.113.9, 198.51.100.7", "2001:db8::7", "127.0.0.1"):
            response = vouched(server.base, "Rick", X_Forwarded_For=forwarded_for) if forwarded_for else \
                vouched(server.base, "Rick")
            assert response.status_code == 200 and "Rick Responder" in response.text, forwarded_for
            again = requests.get(server.base + "/console/", timeout=10, allow_redirects=False,
                                 cookies={"pgalert_session": response.cookies["pgalert_session"]})
            assert again.status_code == 200  # the session lives on without the header
        stranger = vouched(server.base, "mallory@example.com", X_Forwarded_For="203.0.113.9")
        assert stranger.status_code == 303  # vouched for, but no console user
    finally:
        server.stop()
    log = server.log.read_text()
    assert "mallory@example.com" in log and "forwarded_for=203.0.113.9" in log  # labelled apart from the peer


def test_single_sign_on_over_ipv6_trusts_the_peer_not_the_header(console_login, users, single_sign_on, tmp_path):
    server = Serve(console_login, tmp_path / "serve.log", *SSO, "--console-trusted-proxies", "::1",
                   env={"FORWARDED_ALLOW_IPS": "::1"}, host="::1").start()
    try:
        for forwarded_for in ("2001:db8::7", "203.0.113.9, ::1", "::1"):
            response = vouched(server.base, "rick", X_Forwarded_For=forwarded_for)
            assert response.status_code == 200 and "Rick Responder" in response.text, forwarded_for
    finally:
        server.stop()


def test_the_session_cookie_is_secure_when_a_tls_proxy_on_this_machine_says_https(console_login, users, single_sign_on, tmp_path):
    """nginx's default proxy_pass http://127.0.0.1:PORT sends Host 127.0.0.1:PORT; X-Forwarded-Proto tells the
    browser's scheme, believed from 127.0.0.1 (FORWARDED_ALLOW_IPS' default) by the peer's TCP address."""
    server = Serve(console_login, tmp_path / "serve.log", *SSO, "--console-trusted-proxies", "127.0.0.1").start()
    try:
        for proto, secure in (("https", True), ("http", False), (None, False)):
            headers = {"X_Forwarded_Proto": proto} if proto else {}
            response = vouched(server.base, "rick", **headers)
            assert response.status_code == 200
            assert ("; secure" in response.headers["set-cookie"].lower()) is secure, proto
            form = requests.get(server.base + "/console/login", timeout=10,
                                headers={"X-Forwarded-Proto": proto} if proto else {})
            assert ("; secure" in form.headers["set-cookie"].lower()) is secure, proto
    finally:
        server.stop()


def test_the_identity_a_proxy_vouches_for_wins_over_a_cookie_and_reuses_one_session(console_login, users, single_sign_on, conn,
                                                                                      tmp_path):
    server = Serve(console_login, tmp_path / "serve.log", *SSO, "--console-trusted-proxies", "127.0.0.1").start()
    try:
        ada = vouched(server.base, "ada").cookies["pgalert_session"]
        # a browser (a shared one, or a planted cookie) holds Ada's session; the proxy vouches for Rick
        for login in ("rick", "Rick", "vera"):
            response = requests.get(server.base + "/console/users", cookies={"pgalert_session": ada}, timeout=10,
                                    headers={"X-Forwarded-Email": login}, allow_redirects=False)
            assert response.status_code == 403 and "Ada Admin" not in response.text, login
            assert response.cookies["pgalert_session"] != ada  # the browser now holds the vouched person's
        stranger = requests.get(server.base + "/console/", cookies={"pgalert_session": ada}, timeout=10,
                                headers={"X-Forwarded-Email": "mallory@example.com"}, allow_redirects=False)
        assert stranger.status_code == 303  # not a console user: nobody, not the cookie's Ada
        before = conn.execute("SELECT count(*) FROM monitoring_console_sessions").fetchone()[0]
        for _ in range(20):  # health checks or API calls through the proxy, without a cookie
            assert vouched(server.base, "rick").status_code == 200
        with_own = vouched(server.base, "ada")  # and Ada's own cookie with the proxy vouching for her is used
        again = requests.get(server.base + "/console/", cookies={"pgalert_session": ada}, timeout=10,
                             headers={"X-Forwarded-Email": "ada"}, allow_redirects=False)
        assert again.status_code == 200 and "pgalert_session" not in again.headers.get("set-cookie", "")
        assert with_own.status_code == 200
        assert conn.execute("SELECT count(*) FROM monitoring_console_sessions").fetchone()[0] <= before + 1
    finally:
        server.stop()


def test_a_console_admin_adds_a_user_who_then_signs_in_and_a_responder_cannot_manage_users(
        browser, serve, users, conn):
    admin = sign_in(browser, serve, "ada")
    admin.goto("/console/users")
    form = admin.locator("form.user")
    form.locator("input[name=login]").fill("nina")
    form.locator("input[name=display_name]").fill("Nina Newcomer")
    form.locator("select[name=role]").select_option("responder")
    form.locator("input[name=password]").fill("short")
    form.locator("button[type=submit]").click()
    expect(admin.locator(".error")).to_contain_text("at least 12")
    form.locator("input[name=login]").fill("nina")
    form.locator("input[name=display_name]").fill("Nina Newcomer")
    form.locator("input[name=password]").fill(PASSWORD)
    form.locator("button[type=submit]").click()
    expect(admin.locator('tr[data-user="nina"]')).to_contain_text("responder")
    nina = sign_in(browser, serve, "nina")
    expect(nina.locator(".who")).to_contain_text("Nina Newcomer")
    assert nina.locator("nav a", has_text="Users").count() == 0
    assert nina.goto("/console/users").status == 403
    csrf = nina.locator("form[action='/console/logout'] input[name=csrf]").get_attribute("value")
    forged = nina.request.post("/console/users", form={"csrf": csrf, "login": "nina", "display_name": "Nina",
                                                        "role": "admin", "password": ""})
    assert forged.status == 403
    assert conn.execute("SELECT role FROM monitoring_console_users WHERE login = 'nina'").fetchone() == ("responder",)
    admin.locator('tr[data-user="nina"] button', has_text="Disable").click()
    expect(admin.locator('tr[data-user="nina"]')).to_contain_text("disabled")
    nina.reload()
    assert "/console/login" in nina.url


def test_a_console_admin_changes_a_channels_description_and_settings_but_never_its_secrets(browser, serve, users, conn):
    conn.execute("INSERT INTO monitoring_providers (provider, kind, secret_refs, settings, description) VALUES "
                 "('pagerduty_payments', 'pagerduty', '{\"routing_key\": \"env:PD_KEY_PAYMENTS\"}', '{}', 'payments')")
    admin = sign_in(browser, serve, "ada")
    admin.goto("/console/channels")
    form = admin.locator('form[data-channel-form="pagerduty_payments"]')
    admin.locator("summary", has_text="Edit pagerduty_payments").click()
    form.locator("textarea[name=settings]").fill('{"events_url": "https://events.eu.pagerduty.com/v2/enqueue", "colour": 1}')
    form.locator("button[type=submit]").click()
    expect(admin.locator(".error")).to_contain_text("a pagerduty channel takes no setting colour (it takes: events_url)")
    admin.locator("summary", has_text="Edit pagerduty_payments").click()
    form.locator("input[name=description]").fill("payments team, EU")
    form.locator("textarea[name=settings]").fill('{"events_url": "https://events.eu.pagerduty.com/v2/enqueue"}')
    form.locator("button[type=submit]").click()
    expect(admin.locator('tr[data-channel="pagerduty_payments"]')).to_contain_text("payments team, EU")
    row = conn.execute("SELECT description, settings, secret_refs FROM monitoring_providers "
                       "WHERE provider = 'pagerduty_payments'").fetchone()
    assert row == ("payments team, EU", {"events_url": "https://events.eu.pagerduty.com/v2/enqueue"},
                   {"routing_key": "env:PD_KEY_PAYMENTS"})
    responder = sign_in(browser, serve, "rick")
    responder.goto("/console/channels")
    assert responder.locator("form.channel").count() == 0


def test_an_admin_sends_a_test_page_and_sees_each_message_and_a_responder_may_test_only_themselves(
        browser, serve, users, conn):
    for person, kind, address in (("Alice", "sms", "+14155550123"), ("Alice", "push", "oncall-alice"),
                                  ("Rick", "sms", "+14155550124")):
        conn.execute("INSERT INTO monitoring_people (name) VALUES (%s) ON CONFLICT DO NOTHING", (person,))
        method = conn.execute("SELECT monitoring_add_contact_method(%s, %s, %s)", (person, kind, address)).fetchone()[0]
        conn.execute("UPDATE monitoring_contact_methods SET verified_at = now() WHERE id = %s", (method,))
        conn.execute("INSERT INTO monitoring_notification_rules (person_id, contact_method_id) "
                     "SELECT person_id, id FROM monitoring_contact_methods WHERE id = %s", (method,))
    conn.execute("UPDATE monitoring_console_users SET person_id = (SELECT id FROM monitoring_people WHERE name = 'Rick') "
                 "WHERE login = 'rick'")
    page = sign_in(browser, serve, "ada")
    page.goto("/console/oncall")
    alice = page.locator('table.contacts tr[data-person="Alice"]')
    expect(alice).to_contain_text("sms +14155550123")
    alice.locator("button").click()
    page.wait_for_url(re.compile(r"/console/alerts/\d+$"))
    # a timeline is read by every viewer: the address is masked there, even for an admin (#35, 2)
    expect(page.locator("body")).to_contain_text("notify queued for twilio to Alice: sms +1 ••• ••• 23")
    expect(page.locator("body")).to_contain_text("notify queued for ntfy to Alice: push ntfy: ••••ce")
    assert "oncall-alice" not in page.content() and "+14155550123" not in page.content()
    rick = sign_in(browser, serve, "rick")
    rick.goto("/console/oncall")
    rick.locator('table.contacts tr[data-person="Alice"] button').click()
    expect(rick.locator("body")).to_contain_text("only an admin or Alice themselves may send Alice a test page")
    rick.goto("/console/oncall")
    rick.locator('table.contacts tr[data-person="Rick"] button').click()
    rick.wait_for_url(re.compile(r"/console/alerts/\d+$"))
    expect(rick.locator("body")).to_contain_text("to Rick: sms +1 ••• ••• 24")
    assert conn.execute("SELECT count(*) FROM monitoring_alerts WHERE alert_type = 'pgalert_test_page'").fetchone() == (2,)


def form_sign_in(base: str, login: str, password: str) -> requests.Response:
    """A sign-in as a script sends it: the form's CSRF cookie and token, then the POST."""
    with requests.Session() as browserless:
        form = browserless.get(base + "/console/login", timeout=30)
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text).group(1)
        return browserless.post(base + "/console/login", data={"login": login, "password": password, "csrf": csrf},
                                timeout=60, allow_redirects=False)


def test_a_flood_of_sign_ins_never_delays_intake_and_a_login_gets_five_password_checks(serve, users, conn):
    """40 strangers' sign-ins at once, 30 of them guessing one admin's password (#35, 6): alert intake and the
    health check answer while they run, each guess beyond the limit is refused before it is checked, and then
    even the right password waits out the 15 minutes."""
    token = new_token()
    conn.execute("SELECT monitoring_create_api_client('flood_probe', %s)", (token_sha256(token),))
    with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
        guesses = [pool.submit(form_sign_in, serve.base, "ada" if n < 30 else f"stranger{n}", f"guess number {n}")
                   for n in range(40)]
        intake = [requests.post(serve.base + "/v1/alerts", json={"alert_type": "flood_probe", "severity": "info",
                                                                 "title": f"during the flood {n}"},
                                headers={"Authorization": f"Bearer {token}"}, timeout=30) for n in range(5)]
        health = requests.get(serve.base + "/healthz", timeout=30)
        answers = [guess.result() for guess in guesses]
    assert [r.status_code for r in intake] == [200] * 5 and health.status_code == 200
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {401, 429, 503}, statuses
    assert all(r.headers.get("retry-after") for r in answers if r.status_code == 503)
    # ada's password was checked at most five times, however many guesses arrived at once; guessing on until
    # refused makes it exactly five, and then even the right password waits out the 15 minutes
    checked = [r.status_code for r in answers[:30]].count(401)
    assert checked <= 5
    while (answer := form_sign_in(serve.base, "ada", "one more guess")).status_code == 401:
        checked += 1
    assert answer.status_code == 429 and checked == 5
    assert form_sign_in(serve.base, "ada", PASSWORD).status_code == 429
    assert conn.execute("SELECT count(*) FROM monitoring_console_sessions").fetchone() == (0,)


# ---------------------------------------------------------------------------------------------------------
# Hostile requests (#35 items 7, 11, 12): over HTTP as a script sends them, no browser needed
# ---------------------------------------------------------------------------------------------------------
MAX_BODY = 4096  # under the console's own 64 KiB: the console obeys --max-body-bytes


@pytest.fixture
def strict_serve(console_login: str, tmp_path: Path) -> Iterator[Serve]:
    server = Serve(console_login, tmp_path / "serve.log", "--max-body-bytes", str(MAX_BODY), "--body-timeout", "0.5",
                   env={"PGALERT_ACTION_KEY": "action-key-for-tests"}).start()
    yield server
    server.stop()
    assert "Traceback" not in server.log.read_text()


def signed_in(serve: Serve, login: str) -> tuple[requests.Session, str]:
    """A session signed in through the form as a script would, and the CSRF token its forms carry."""
    session = requests.Session()
    form = session.get(serve.base + "/console/login", timeout=10).text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
    done = session.post(serve.base + "/console/login", data={"csrf": csrf, "login": login, "password": PASSWORD},
                        allow_redirects=False, timeout=10)
    assert done.status_code == 303, done.text
    page = session.get(serve.base + "/console/", timeout=10).text
    return session, re.search(r'name="csrf" value="([^"]+)"', page).group(1)


NUMBERS = ["²", "٣", "１", "3²", "9" * 19, "9" * 30, "-1", "+1", " 1", "1e3", "0x1", "1.5", "\x00", "0"]
DURATIONS = ["99999999999d", "9" * 30 + "s", "99999h", "²h", "٣h", "1d²h", "\x00", "-1h", "2 hours"]
TIMES = ["9999-12-31T23:59", "9999-12-31T23:59-12:00", "0001-01-01T00:00", "0001-01-01T00:00+14:00", "²",
         "2026-13-45T99:99", "\x00"]
REGEXES = ["(" * 3000, "(" * 3000 + "a" + ")" * 3000, "(?:" * 900 + ")" * 900, "a{1000000}", "[" * 2000]
TEXTS = ["\x00", "²", "'\"<>&", "%00", "x" * 3000, "../../etc", "\u202e", "NaN"]


def hostile_requests(alert_id: int, silence_id: int) -> list[tuple[str, str, dict, dict, bool]]:
    """Every route and each value it parses, with hostile values: (method, path, query, form, must_refuse).
    A number, id, duration, time or regex that is not one must be refused (4xx); any value at all must never be
    answered with a 5xx."""
    override = {"schedule": "payments", "person": "Alice", "reason": "r"}
    window = {"name": "w1", "matchers": 'alert_type="x"', "time_zone": "UTC", "kind": "weekly", "days": "6",
              "start_time": "02:00", "duration": "4h"}
    once = {**window, "kind": "once", "starts_at": "2026-12-05T22:00", "ends_at": "2026-12-06T02:00"}
    cases: list[tuple[str, str, dict, dict, bool]] = []
    for n in NUMBERS:
        cases += [("GET", "/console/sla", {"hours": n}, {}, True), ("GET", "/console/sla.csv", {"hours": n}, {}, True),
                  ("GET", "/console/silences/new", {"alert": n}, {}, True),
                  ("GET", "/console/silences/new", {"silence": n}, {}, True),
                  ("GET", "/console/rules/r1/backtest", {"days": n}, {}, True),
                  ("POST", "/console/alerts/bulk", {}, {"alert_id": n, "action": "acknowledge"}, True),
                  ("POST", "/console/windows", {}, {**window, "days": n}, True)]
    for n in ["9" * 19, "9" * 30, "9" * 5000]:  # the router takes only ASCII digits; their range is checked
        cases += [("GET", f"/console/alerts/{n}", {}, {}, True),
                  ("POST", f"/console/alerts/{n}/acknowledge", {}, {}, True),
                  ("POST", f"/console/alerts/{n}/reopen", {}, {}, True),
                  ("POST", f"/console/silences/{n}/expire", {}, {}, True),
                  ("POST", f"/console/silences/{n}/extend", {}, {"duration": "1h"}, True)]
    for d in DURATIONS:
        cases += [("POST", "/console/silences", {}, {"matchers": 'alert_type="x"', "duration": d}, True),
                  ("POST", f"/console/silences/{silence_id}/extend", {}, {"duration": d}, True),
                  ("POST", "/console/oncall/override", {}, {**override, "from": "now", "duration": d}, True),
                  ("POST", "/console/windows", {}, {**window, "duration": d}, True)]
    for t in TIMES:
        cases += [("POST", "/console/oncall/override", {}, {**override, "from": t, "duration": "1h"}, True),
                  ("POST", "/console/oncall/override", {}, {**override, "from": "now", "until": t}, True),
                  ("POST", "/console/windows", {}, {**once, "starts_at": t}, True),
                  ("POST", "/console/windows", {}, {**once, "ends_at": t}, True),
                  ("POST", "/console/windows", {}, {**window, "start_time": t}, True)]
    for r in REGEXES:
        for op in ("=~", "!~"):
            cases += [("POST", "/console/silences/preview", {}, {"matchers": f'labels.env{op}"{r}"'}, True),
                      ("POST", "/console/silences", {}, {"matchers": f'alert_type{op}"{r}"', "duration": "1h"}, True),
                      ("POST", "/console/windows", {}, {**window, "matchers": f"source{op}{r}"}, True)]
    for t in TEXTS:
        for name in ("status", "severity", "alert_type", "source", "label", "q", "group"):
            cases += [("GET", "/console/", {name: t}, {}, False), ("GET", "/console/alerts/rows", {name: t}, {}, False)]
        cases += [("GET", "/console/events", {"since": t}, {}, False),
                  ("GET", "/console/login", {"next": t}, {}, False),
                  ("POST", "/console/users", {}, {"login": t, "display_name": t, "role": "viewer"}, False),
                  ("POST", "/console/users", {}, {"login": "new", "display_name": "n", "role": t}, False),
                  ("POST", f"/console/users/{t}/disable", {}, {}, False),
                  ("POST", f"/console/windows/{t}/enabled", {}, {"enabled": "true"}, False),
                  ("POST", f"/console/channels/{t}", {}, {"settings": "{}"}, False),
                  ("POST", "/console/channels/slack", {}, {"settings": t, "description": t}, False),
                  ("POST", f"/console/rules/{t}/enabled", {}, {"enabled": "false"}, False),
                  ("GET", f"/console/rules/{t}/backtest", {}, {}, False),
                  ("POST", "/console/oncall/override", {}, {**override, "person": t, "schedule": t, "reason": t,
                                                            "from": "now", "duration": "1h"}, False),
                  ("POST", "/console/oncall/test-page", {}, {"person": t}, False),
                  ("POST", "/console/silences", {}, {"matchers": t, "duration": "1h", "comment": t}, False),
                  ("POST", "/console/silences/preview", {}, {"matchers": t}, False),
                  ("POST", f"/console/alerts/{alert_id}/{t}", {}, {}, False),
                  ("POST", f"/console/alerts/{alert_id}/acknowledge", {}, {"note": t}, False),
                  ("POST", "/console/alerts/bulk", {}, {"alert_id": str(alert_id), "action": t,
                                                        "filters": t}, False),
                  ("POST", "/console/windows", {}, {**window, "name": t, "time_zone": t, "comment": t}, False)]
    return cases


def test_every_route_answers_hostile_values_with_a_4xx_and_a_reason_never_a_5xx(strict_serve, users, conn):
    make_schedule(conn, "payments", "UTC", ["Alice", "Bob"])
    alert_id = raise_alert(conn, "Payments failing")
    silence_id = conn.execute("INSERT INTO monitoring_silences (matchers, ends_at, comment) VALUES "
                              "('[{\"field\": \"alert_type\", \"op\": \"=\", \"value\": \"x\"}]', "
                              "now() + interval '1 hour', 'test') RETURNING id").fetchone()[0]
    conn.execute("INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, window_size, threshold, "
                 "severity) VALUES ('r1', 'count', 'e', interval '5 minutes', 3, 'critical')")
    session, csrf = signed_in(strict_serve, "ada")
    wrong = []
    cases = hostile_requests(alert_id, silence_id)
    for method, path, query, form, must_refuse in cases:
        try:
            answer = session.request(method, strict_serve.base + path, params=query,
                                     data={**form, "csrf": csrf} if method == "POST" else None,
                                     allow_redirects=False, timeout=10, stream=True)
        except requests.ConnectionError as error:  # the server dropped the connection: as bad as a 500
            wrong.append(f"{method} {path} {query or form!r:.150}: {error}")
            continue
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            answer.close()  # a live stream: its status is the answer
            assert answer.status_code == 200
            continue
        reason = re.search(r'class="error[^"]*"[^>]*>[^<]{10,}', answer.text)
        refused_with_reason = (400 <= answer.status_code < 500 and reason) or (
            path == "/console/silences/preview" and reason)  # htmx shows a preview's refusal in place: a 200
        if answer.status_code >= 500 or (must_refuse and not refused_with_reason):
            wrong.append(f"{method} {path} {query or form!r:.150}: {answer.status_code} {answer.text[:100]!r}")
    assert not wrong, f"{len(wrong)} of {len(cases)}:\n" + "\n".join(wrong[:60])
    # and the server still answers, its pool not poisoned by any of them
    assert session.get(strict_serve.base + f"/console/alerts/{alert_id}", timeout=10).status_code == 200


def test_a_hostile_ntfy_link_is_refused_with_a_reason(strict_serve):
    for token in ("%C2%B2.1.x", "1.%C2%B2.x", "%D9%A3.1.x", "%EF%BC%91.1.x", "9999999999999999999999999999.1.x",
                  "1.99999999999999999999999999999999.x", "%00", "1.1.", "1..", "x" * 300):
        answer = requests.post(f"{strict_serve.base}/v1/ntfy/ack/{token}", timeout=10)
        assert answer.status_code == 403 and "not valid" in answer.json()["error"], (token, answer.text)


def test_a_link_cannot_plant_text_in_a_pages_message_and_pgalerts_own_sentence_still_shows(strict_serve, users,
                                                                                          conn):
    resolved = conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message, dedup_key) "
                            "VALUES ('x', 'info', 't', '', 'same') RETURNING id").fetchone()[0]
    conn.execute("SELECT monitoring_resolve_alert(%s, 'test')", (resolved,))
    alert_id = conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message, dedup_key) "
                            "VALUES ('x', 'info', 't', '', 'same') RETURNING id").fetchone()[0]
    silence_id = conn.execute("INSERT INTO monitoring_silences (matchers, ends_at, comment) VALUES "
                              "('[{\"field\": \"alert_type\", \"op\": \"=\", \"value\": \"x\"}]', "
                              "now() + interval '1 hour', 'test') RETURNING id").fetchone()[0]
    session, csrf = signed_in(strict_serve, "rick")
    planted = "Your session expired: call +1 555 0100 and read out your password"
    for path in (f"/console/alerts/{alert_id}", "/console/silences", "/console/rules", "/console/", "/console/oncall",
                 "/console/windows", "/console/channels", "/console/sla", "/console/silences/new"):
        for name in ("error", "message", "msg", "flash", "notice"):
            page = session.get(strict_serve.base + path, params={name: planted}, timeout=10)
            assert page.status_code < 500 and "555 0100" not in page.text, (path, name)
    login = requests.get(strict_serve.base + "/console/login", params={"error": planted, "next": planted}, timeout=10)
    assert "555 0100" not in login.text
    # a refusal still says pgalert's sentence, on the page itself: the database's, and the console's own
    reopened = session.post(f"{strict_serve.base}/console/alerts/{resolved}/reopen", data={"csrf": csrf}, timeout=10)
    assert reopened.status_code == 409 and "?" not in reopened.url, reopened.url
    assert re.search(rf'class="error"[^>]*>alert {resolved} cannot be reopened: alert {alert_id} with the same',
                     reopened.text), reopened.text[-2000:]
    extended = session.post(f"{strict_serve.base}/console/silences/{silence_id}/extend",
                            data={"csrf": csrf, "duration": "soon"}, timeout=10)
    assert extended.status_code == 400 and "is not like 2h" in extended.text and "?" not in extended.url


def test_console_bodies_obey_the_size_and_time_limits_of_intake(strict_serve, users):
    base = strict_serve.base
    host, port = base.removeprefix("http://").split(":")
    # over the size: refused with 413 whether declared or streamed, before it is read in full; signed in or not
    session, csrf = signed_in(strict_serve, "rick")
    for client, path in ((requests, "/console/login"), (session, "/console/silences/preview"),
                         (session, "/console/logout"), (session, "/console/alerts/bulk")):
        chunked = client.post(base + path, data=iter([b"csrf=x&comment=" + b"x" * 1000] * 1000), timeout=10,
                              headers={"Content-Type": "application/x-www-form-urlencoded"}, allow_redirects=False)
        assert chunked.status_code == 413, (path, chunked.status_code)
    big_form = session.post(base + "/console/silences", data={"csrf": csrf, "matchers": 'alert_type="x"',
                                                              "duration": "1h", "comment": "x" * (2 * MAX_BODY)},
                            timeout=10)
    assert big_form.status_code == 413 and f"{MAX_BODY} bytes" in big_form.text
    with socket.create_connection((host, int(port)), timeout=10) as declared:
        declared.sendall(b"POST /console/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
                         b"\r\nContent-Length: 157286400\r\n\r\ncsrf=")
        assert declared.recv(4096).startswith(b"HTTP/1.1 413 ")
    # a body that trickles or stalls: 408 after --body-timeout, and the connection is closed
    with socket.create_connection((host, int(port)), timeout=10) as stalled:
        stalled.sendall(b"POST /console/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
                        b"\r\nContent-Length: 100\r\n\r\ncsrf=")
        answer = b""
        while chunk := stalled.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 ")
    # a form within the limits still works
    fine = session.post(base + "/console/silences", data={"csrf": csrf, "matchers": 'alert_type="x"', "duration": "1h",
                                                          "comment": "deploy"}, allow_redirects=False, timeout=10)
    assert fine.status_code == 303
