"""The console's pure parts: filters from the URL, links safe to click, the merged timeline, matchers as people
type them, sign-in helpers. Rows in, context out; no server."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest

from dispatcher.console import auth, views
from dispatcher.console.app import safe_next

T0 = dt.datetime(2026, 12, 5, 3, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_filters_come_from_the_url_and_go_back_into_it():
    filters = views.Filters.from_query({"severity": "critical", "label": "env=prod", "q": " disk "})
    assert filters.params() == {"status": "active", "severity": "critical", "alert_type": None, "source": None,
                                "label_key": "env", "label_value": "prod", "q": "disk", "limit": views.LIST_LIMIT}
    assert views.Filters.from_query(dict(pair.split("=", 1) for pair in
                                         filters.query_string().replace("%3D", "=").split("&"))) == filters
    assert views.Filters().query_string() == "" and not views.Filters().active()


@pytest.mark.parametrize(("query", "why"), [({"severity": "urgent"}, "severity is one of"),
                                            ({"status": "gone"}, "status is one of"),
                                            ({"label": "no equals sign"}, "label is KEY=VALUE"),
                                            ({"group": "team"}, "group is type or group")])
def test_a_bad_filter_says_what_is_accepted(query, why):
    with pytest.raises(views.BadFilter, match=why):
        views.Filters.from_query(query)


@pytest.mark.parametrize(("value", "link"), [
    ("https://runbooks.example.com/disk", "https://runbooks.example.com/disk"),
    ("http://grafana.local:3000/d/x?var=1", "http://grafana.local:3000/d/x?var=1"),
    ("javascript:alert(1)", None), ("JaVaScRiPt:alert(1)", None), ("data:text/html,<script>", None),
    ("//evil.example.com", None), ("/console/alerts/1", None), ("https://", None),
    ("https://example.com/\nSet-Cookie: x", None), (42, None),
])
def test_only_http_links_with_a_host_are_clickable(value, link):
    assert views.safe_link(value) == link


def test_details_show_labels_apart_and_non_strings_as_json():
    entries = views.details({"runbook_url": "https://r.example.com", "count": 3, "labels": {"env": "prod"}})
    assert entries == [views.Detail("runbook_url", "https://r.example.com", "https://r.example.com"),
                       views.Detail("count", "3")]
    assert views.labels({"labels": {"env": "prod", "tier": 1}}) == [("env", "prod"), ("tier", "1")]


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (90, "1m"), (3600, "1h"), (3 * 3600 + 600, "3h 10m"),
                                                (86400 * 2 + 3600 * 4, "2d 4h"), (-5, "0s")])
def test_ages_read_at_a_glance(seconds, text):
    assert views.age(T0, at(seconds)) == text


def test_the_timeline_merges_everything_in_time_order_with_who_and_via_what():
    alert = {"created_at": at(0), "severity": "critical", "alert_type": "payment_failure", "source": "api",
             "occurrence_count": 3, "last_seen_at": at(50), "acknowledged_at": at(40), "acknowledged_by": "Rick",
             "acknowledged_via": "console", "acknowledge_note": "on it", "resolved_at": None}
    deliveries = [{"id": 7, "provider": "pagerduty", "action": "trigger", "target": "", "status": "succeeded",
                   "attempts": 2, "next_attempt_at": at(0), "created_at": at(0.01)}]
    attempts = [{"delivery_id": 7, "attempt": 1, "started_at": at(1), "finished_at": at(1.2), "outcome": "retry",
                 "http_status": 503, "error": "busy"},
                {"delivery_id": 7, "attempt": 2, "started_at": at(3), "finished_at": at(3.1), "outcome": "succeeded",
                 "http_status": 202, "error": None}]
    holds = [{"reason": "silence", "held_by": "silence 4", "held_at": at(60), "released_at": None,
              "release_reason": None}]
    inbound = [{"via": "pagerduty", "action": "acknowledge", "actor": "Alice", "occurred_at": at(45),
                "received_at": at(46), "outcome": "ignored"}]
    entries = views.timeline(alert, deliveries, attempts, holds, [], inbound)
    assert [e.what for e in entries] == [
        "raised", "trigger queued for pagerduty", "trigger to pagerduty: retry", "trigger to pagerduty: succeeded",
        "acknowledged by Rick", "acknowledge at pagerduty", "repeated: 3 occurrences in all", "held: silence"]
    assert entries[2].detail == "attempt 1, HTTP 503, 200 ms, busy"
    assert entries[4].detail == "via console: on it"


def test_matchers_are_read_as_alertmanager_writes_them_and_written_back_the_same_way():
    typed = '{alert_type="deploy_check", labels.env=~"prod|staging"}\nseverity!="info"'
    matchers = views.parse_matchers(typed)
    assert matchers == [{"field": "alert_type", "op": "=", "value": "deploy_check"},
                        {"field": "labels.env", "op": "=~", "value": "prod|staging"},
                        {"field": "severity", "op": "!=", "value": "info"}]
    assert views.parse_matchers(views.format_matchers(matchers)) == matchers
    assert views.parse_matchers('source="a, \\"b\\""') == [{"field": "source", "op": "=", "value": 'a, "b"'}]


@pytest.mark.parametrize("typed", ["", "colour=red", 'alert_type=~"("'])
def test_a_matcher_that_cannot_be_saved_is_explained(typed):
    with pytest.raises(ValueError):
        views.parse_matchers(typed)


def test_the_console_derives_the_hash_the_database_compares_and_refuses_settings_beyond_its_costs():
    stored = auth.hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    settings, kept = stored.rsplit("$", 1)
    settings += "$"
    assert auth.derive_hash(settings, len(kept) * 3 // 4, "correct horse battery") == kept
    assert auth.derive_hash(settings, len(kept) * 3 // 4, "correct horse batterY") != kept
    for bad in ("not a hash", "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$", "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$x",
                "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$", "$argon2id$v=19$m=8,t=1$c2FsdHNhbHQ$",
                "$argon2id$v=19$m=8,t=1,p=1$!!$", "$argon2id$v=19$m=8,t=1,p=1$c2FsdA$"):
        with pytest.raises(auth.BadSettings):
            auth.derive_hash(bad, 32, "correct horse battery")
    with pytest.raises(ValueError, match="at least 12"):
        auth.hash_password("short")


def test_csrf_tokens_belong_to_one_session():
    one, two = auth.new_token(), auth.new_token()
    assert one != two and len(one) >= 43
    assert auth.same_token(auth.csrf_token(one), auth.csrf_token(one))
    assert not auth.same_token(auth.csrf_token(one), auth.csrf_token(two))
    assert not auth.same_token(None, auth.csrf_token(one)) and not auth.same_token("", auth.csrf_token(one))


def test_only_the_listed_proxies_are_believed():
    networks = auth.parse_networks("10.0.0.5, 10.1.0.0/16, ::1, 2001:db8::/64")
    assert networks[:2] == (ipaddress.ip_network("10.0.0.5/32"), ipaddress.ip_network("10.1.0.0/16"))
    assert auth.trusted("10.1.2.3", networks) and auth.trusted("10.0.0.5", networks)
    assert auth.trusted("::1", networks) and auth.trusted("2001:db8::7", networks)
    # a socket listening on both IPv6 and IPv4 sees an IPv4 peer as an IPv4-mapped IPv6 address
    assert auth.trusted("::ffff:10.0.0.5", networks) and not auth.trusted("::ffff:10.0.0.6", networks)
    assert not auth.trusted("10.0.0.6", networks) and not auth.trusted(None, networks)
    assert not auth.trusted("2001:db8:1::7", networks) and not auth.trusted("::2", networks)
    assert not auth.trusted("not an address", networks) and not auth.trusted("10.0.0.5, 10.0.0.6", networks)
    with pytest.raises(ValueError):
        auth.parse_networks("10.0.0.300")


# (PGALERT_PUBLIC_URL, the request's scheme, its Host header): the scheme is X-Forwarded-Proto only when a proxy
# that FORWARDED_ALLOW_IPS trusts by its TCP address said so, else what serve itself speaks, http
@pytest.mark.parametrize(("public_url", "scheme", "host", "secure"), [
    ("", "http", "127.0.0.1:8080", False), ("", "http", "localhost:8080", False), ("", "http", "[::1]:8080", False),
    ("", "http", "alerts.example.com", True), ("", "http", "10.0.0.7:8080", True), ("", "http", "", True),
    # a TLS proxy on this machine (nginx's default proxy_pass http://127.0.0.1:8080, X-Forwarded-Proto: https)
    ("", "https", "127.0.0.1:8080", True), ("", "https", "[::1]:8080", True), ("", "https", "alerts.example.com", True),
    # the configured public URL is what browsers use, whatever the request says
    ("https://alerts.example.com", "http", "127.0.0.1:8080", True),
    ("https://alerts.example.com/", "http", "localhost", True), ("https://127.0.0.1:8443", "http", "127.0.0.1", True),
    ("http://alerts.example.com", "http", "127.0.0.1:8080", True),
    ("http://127.0.0.1:8080", "https", "alerts.example.com", False), ("http://[::1]:8080", "http", "x", False),
])
def test_cookies_are_secure_unless_the_browser_speaks_plain_http_to_this_machine(public_url, scheme, host, secure):
    assert auth.cookie_secure(public_url, scheme, host) is secure


@pytest.mark.parametrize(("target", "where"), [("/console/alerts/3", "/console/alerts/3"), ("//evil.com", "/console/"),
                                               ("https://evil.com/console/", "/console/"), ("/console\\@evil", "/console/"),
                                               (None, "/console/"), ("/metrics", "/console/")])
def test_after_sign_in_only_console_paths(target, where):
    assert safe_next(target) == where


@pytest.mark.parametrize(("value", "unit", "text"), [(None, "seconds", "–"), (4.25, "seconds", "4.2 s"),
                                                     (45, "seconds", "45 s"), (600, "seconds", "10.0 min"),
                                                     (9000, "seconds", "2.5 h"), (0.125, "ratio", "12.5%")])
def test_sla_figures_read_as_durations_or_percentages(value, unit, text):
    assert views.figure(value, unit) == text


def test_a_chart_leaves_a_gap_for_a_day_without_samples_and_scales_to_the_highest_value():
    days = [T0 + dt.timedelta(days=n) for n in range(3)]
    drawn = views.chart(days, {"p50": [10.0, None, 20.0], "p95": [None, None, None]}, "seconds", width=200, height=100)
    assert drawn.series == [("p50", "0.0,50.0 200.0,0.0"), ("p95", "")]
    assert drawn.maximum == "20 s" and drawn.first == "Dec 05" and drawn.last == "Dec 07"


def test_a_csv_cell_that_a_spreadsheet_would_run_is_kept_as_text():
    text = views.csv_text(["metric", "note"], [["mtta", "=HYPERLINK(\"http://evil\")"], ["mttr", "-1+2"]])
    assert text.splitlines() == ["metric,note", "mtta,\"'=HYPERLINK(\"\"http://evil\"\")\"", "mttr,'-1+2"]


def test_a_typed_time_is_utc_unless_it_says_otherwise():
    assert views.parse_local_time("", T0) == T0
    assert views.parse_local_time("2026-12-05T14:30", T0) == dt.datetime(2026, 12, 5, 14, 30, tzinfo=dt.UTC)
    assert views.parse_local_time("2026-12-05T14:30+01:00", T0).utcoffset() == dt.timedelta(hours=1)
    with pytest.raises(ValueError, match="is not a time"):
        views.parse_local_time("tomorrow", T0)


def test_a_held_escalation_says_what_holds_it_never_a_time_that_will_not_come():
    """A silenced alert's page said "Next: step 2 of default_critical in 14m" (#36 item 1)."""
    now = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
    running = {"finished_at": None, "next_index": 1, "policy_name": "default_critical", "held_by": None,
               "next_step_at": now + dt.timedelta(minutes=14)}
    assert views.next_escalation([running], now) == ("step 2 of default_critical", "in 14m")
    assert views.next_escalation([{**running, "next_step_at": now}], now)[1] == "due now"
    held = {**running, "next_step_at": now - dt.timedelta(minutes=2), "held_by": "silence 3"}
    assert views.next_escalation([held], now) == ("step 2 of default_critical", "held by silence 3")


def test_the_rules_page_says_who_runs_the_scheduled_jobs():
    """#37, 1: pg_cron, the dispatchers where pg_cron cannot, or nobody (with the mend)."""
    row = {"running": True, "seconds_since_run": 20.0, "by_pg_cron": True, "pg_cron_problem": None}
    assert views.scheduler_state(row) == ("ok", "Scheduled jobs run under pg_cron.")
    row = {**row, "by_pg_cron": False, "pg_cron_problem": "the pg_cron extension is not installed in database app"}
    assert views.scheduler_state(row) == (
        "ok", "Scheduled jobs run in the dispatchers (pg_cron cannot: the pg_cron extension is not installed in "
              "database app).")
    kind, words = views.scheduler_state({**row, "running": False, "seconds_since_run": 400.4})
    assert kind == "bad" and words.startswith("Scheduled jobs are not running (none for 400 s)")
    assert "pg_cron cannot: the pg_cron extension is not installed" in words and "pgalert dispatch" in words
