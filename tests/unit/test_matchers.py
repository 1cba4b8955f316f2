"""Matchers and durations as typed on the command line."""

from __future__ import annotations

import datetime as dt

import pytest

from dispatcher.matchers import parse_duration, parse_matcher


@pytest.mark.parametrize(("text", "expected"), [
    ("alert_type=deploy_check", {"field": "alert_type", "op": "=", "value": "deploy_check"}),
    ("labels.env=~prod|staging", {"field": "labels.env", "op": "=~", "value": "prod|staging"}),
    ("severity!=info", {"field": "severity", "op": "!=", "value": "info"}),
    ("source!~test-.*", {"field": "source", "op": "!~", "value": "test-.*"}),
    ("details.region=", {"field": "details.region", "op": "=", "value": ""}),
    ("labels.k8s.io/app=x=y", None),  # '/' is not in a field name
    (" dedup_key=a=b ", {"field": "dedup_key", "op": "=", "value": "a=b"}),
])
def test_parse_matcher(text, expected):
    if expected is None:
        with pytest.raises(ValueError, match="not FIELD OP VALUE"):
            parse_matcher(text)
    else:
        assert parse_matcher(text) == expected


@pytest.mark.parametrize("text", ["title=x", "alert_type", "=x", "alert_type~x"])
def test_matchers_that_name_no_field_or_operator_are_refused(text):
    with pytest.raises(ValueError, match="not FIELD OP VALUE"):
        parse_matcher(text)


def test_a_regex_that_does_not_compile_is_refused():
    with pytest.raises(ValueError, match="does not compile"):
        parse_matcher("alert_type=~(unclosed")


@pytest.mark.parametrize(("text", "expected"), [
    ("2h", dt.timedelta(hours=2)), ("90m", dt.timedelta(minutes=90)), ("1d12h", dt.timedelta(days=1, hours=12)),
    ("45s", dt.timedelta(seconds=45)),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "2", "h", "0m", "-1h", "2 hours", "1h1d"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)
