"""Every number, id, duration, time and regex a request gives is read strictly (ASCII digits, bounded ranges) and a
value that is not one is refused with a reason (ValueError, BadPayload, or "not understood"), never an exception
that `pgalert serve` would answer with a 500 (#35 item 11)."""

from __future__ import annotations

import datetime as dt

import pytest

from dispatcher import request_values
from dispatcher.console import views
from dispatcher.inbound import translate, verify
from dispatcher.matchers import parse_duration, parse_matcher

T0 = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)
NOT_ASCII_DIGITS = ["²", "٣", "１", "⁹", "3²", "Ⅻ"]  # isdigit() or int() accept some of them
TOO_BIG = ["9" * 19, "9" * 30, "9" * 5000]
NOT_NUMBERS = ["", " 1", "1 ", "+1", "-1", "1_0", "1e3", "0x10", "1.5", "nan", "\x00", "1\n"]


@pytest.mark.parametrize("text", ["99999999999d", "999999999999h", "9" * 30 + "s", "3651d", "87650h",
                                  "99999999999m1s", "²h", "٣h", "１d", "1d²h", "\x00", "1h\n2h", "2h\x00"])
def test_a_duration_out_of_range_or_not_in_ascii_digits_is_refused(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_the_longest_duration_is_ten_years():
    assert parse_duration("3650d") == dt.timedelta(days=3650)


@pytest.mark.parametrize("regex", ["(" * 3000, "(" * 3000 + ")" * 3000, "(?:" * 800 + "a" + ")" * 800,
                                   "a" * 5000, "[" * 2000, "(a|" * 1000 + ")" * 1000])
@pytest.mark.parametrize("op", ["=~", "!~"])
def test_a_regex_too_deep_or_too_long_is_refused_with_a_reason(regex, op):
    with pytest.raises(ValueError, match="regex"):
        parse_matcher(f"alert_type{op}{regex}")
    with pytest.raises(ValueError, match="regex"):
        views.parse_matchers(f'labels.env{op}"{regex}"')


@pytest.mark.parametrize("text", ["9999-12-31T23:59", "9999-12-31T23:59-12:00", "0001-01-01T00:00",
                                  "0001-01-01T00:00+14:00", "1000-01-01T00:00", "9001-01-01T00:00Z"])
def test_a_time_far_outside_any_use_is_refused(text):
    with pytest.raises(ValueError, match="between"):
        views.parse_local_time(text, T0)


WINDOW = {"name": "w", "matchers": 'alert_type="x"', "time_zone": "UTC", "kind": "weekly", "days": ["6"],
          "start_time": "02:00", "duration": "4h"}


@pytest.mark.parametrize("change", [
    {"days": ["²"]}, {"days": ["٣"]}, {"days": ["9" * 30]}, {"days": ["6", "0"]}, {"days": ["+6"]},
    {"start_time": "٠٢:٠٠"}, {"start_time": "²:00"}, {"start_time": "99:99"}, {"start_time": "24:00"},
    {"duration": "99999999999d"}, {"duration": "²h"},
    {"kind": "once", "starts_at": "9999-12-31T23:00", "ends_at": "9999-12-31T23:59"},
    {"kind": "once", "starts_at": "2026-12-05T22:00", "ends_at": "9999-12-31T23:59", "time_zone": "Etc/GMT+12"},
    {"kind": "once", "starts_at": "0001-01-01T00:00", "ends_at": "2026-12-05T22:00", "time_zone": "Asia/Tokyo"},
    {"matchers": "alert_type=~" + "(" * 3000},
])
def test_a_maintenance_window_with_a_hostile_field_is_refused_with_a_reason(change):
    with pytest.raises(ValueError):
        views.window_from_form({**WINDOW, **change})


def test_a_maintenance_window_still_reads_what_people_type():
    assert views.window_from_form(WINDOW)["days_of_week"] == [6]
    once = views.window_from_form({**WINDOW, "kind": "once", "starts_at": "2026-12-05T22:00",
                                   "ends_at": "2026-12-06T02:00", "time_zone": "Europe/Berlin"})
    assert once["ends_at"] - once["starts_at"] == dt.timedelta(hours=4)


@pytest.mark.parametrize("token", [f"{n}.{e}.x" for n in [*NOT_ASCII_DIGITS, *TOO_BIG, "1"] for e in
                                   [*NOT_ASCII_DIGITS, "9" * 30, "1"]] + ["².1.x", "1.².x", "", "..", "1..", "a.b.c"])
def test_an_ntfy_link_that_is_not_ours_names_no_delivery(token):
    assert verify.action_token_delivery("key", token, 0) is None


def test_an_ntfy_link_of_ours_still_names_its_delivery():
    assert verify.action_token_delivery("key", verify.action_token("key", 42, 100), 50) == 42


@pytest.mark.parametrize("number", [*NOT_ASCII_DIGITS, *TOO_BIG, "0", "-1"])
def test_an_sms_reply_naming_an_alert_that_is_not_an_id_is_not_understood(number):
    assert translate.sms_reply(f"4 {number}") == translate.PhoneReply(None)


@pytest.mark.parametrize("text", [*NOT_ASCII_DIGITS, *TOO_BIG, *NOT_NUMBERS, "0", "9223372036854775808", None, 1])
def test_an_id_is_ascii_digits_within_a_bigint(text):
    """What a call's callback URL (?d=), a form's alert ids and the console's ?alert= and ?silence= are read with."""
    with pytest.raises(ValueError, match="whole number from 1 to 9223372036854775807"):
        request_values.row_id(text, "an id")
    assert request_values.row_id("9223372036854775807", "an id") == 2**63 - 1


@pytest.mark.parametrize("value", [1e30, 1e300, float("inf"), float("nan"), 2 ** 80, 253402300800])
def test_an_opsgenie_time_out_of_range_is_unknown_not_an_error(value):
    assert translate.epoch_time(value) is None


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59-05:00", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+05:00",
                                "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z", "9001-01-01T00:00:00Z"])
def test_an_alert_time_far_outside_any_use_is_rejected_with_a_reason(at):
    [firing, resolved] = translate.api_alerts([
        {"alert_type": "x", "severity": "info", "title": "t", "occurred_at": at},
        {"status": "resolved", "dedup_key": "k", "resolved_at": at}])
    assert isinstance(firing, translate.Rejected) and "between" in firing.reason
    assert isinstance(resolved, translate.Rejected) and "between" in resolved.reason


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00"])
def test_a_pagerduty_event_time_far_outside_any_use_is_refused(at):
    event = {"event": {"id": "E1", "event_type": "incident.acknowledged", "occurred_at": at,
                       "agent": {"summary": "a"}, "data": {"id": "P1", "type": "incident"}}}
    with pytest.raises(translate.BadPayload, match="between"):
        translate.pagerduty_action(event)


@pytest.mark.parametrize("action_ts", ["1e300", "inf", "nan", "-1e20", "9" * 400, "²"])
def test_a_slack_click_time_out_of_range_is_unknown(action_ts):
    click = translate.SlackClick("acknowledge", "k", "U1", "u", action_ts, None, None)
    assert click.as_action().occurred_at is None


@pytest.mark.parametrize("text", ["[" * 60000, '{"a": ' * 30000 + "1" + "}" * 30000])
def test_channel_settings_nested_too_deeply_are_refused_with_a_reason(text):
    with pytest.raises(ValueError, match="nested too deeply"):
        views.channel_settings("slack", text)


@pytest.mark.parametrize("timestamp", ["１７００000000", "١٧٠٠٠٠٠٠٠٠", " 1700000000", "+1700000000", "1_700_000_000",
                                       "9" * 5000, "-1"])
def test_a_slack_timestamp_not_in_ascii_digits_is_refused(timestamp):
    assert verify.slack_signature_problem(b"", timestamp, "v0=x", "secret", 1700000000) == \
        "X-Slack-Request-Timestamp is not a number"


@pytest.mark.parametrize("header", [b"Basic \xe9", b"Basic \xff\xfe", b"Basic ==", b"Basic " + b"A" * 5, b"Basic \x00"])
def test_an_opsgenie_basic_credential_that_is_not_base64_names_no_token(header):
    from starlette.requests import Request

    from dispatcher.inbound.app import opsgenie_token

    request = Request({"type": "http", "method": "POST", "path": "/v1/opsgenie", "query_string": b"",
                       "headers": [(b"authorization", header)]})
    assert opsgenie_token(request) is None
