"""The INSERT path under generated input, as a careless or hostile app (monitoring_writer) would write it: any
JSON value and size for details, any Unicode (NUL included) in text, any severity spelling, any times. The
invariant: a clear error and nothing written, or stored and sendable to every routed provider within its
limits. Deterministic (derandomize), so a failure is a reproducible bug, not a flake."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from dispatcher.providers.base import Delivery, HttpRequest
from dispatcher.worker import build_request
from tests.helpers import PROVIDERS, assert_within_limits, json_values

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

# what PostgreSQL or pgalert may answer, each with a sentence; anything else is a bug
CLEAR_ERRORS = (
    psycopg.errors.StringDataRightTruncation,  # over a documented limit
    psycopg.errors.CheckViolation,  # unknown severity
    psycopg.errors.NotNullViolation,  # no alert_type, no title
    psycopg.errors.InvalidParameterValue,  # a time a writer may not give
    psycopg.errors.UntranslatableCharacter,  # \u0000 in JSON: jsonb cannot hold it
    psycopg.DataError,  # NUL in text: PostgreSQL text cannot hold it (refused by psycopg before sending)
)

# mostly what an app means to write, sometimes what it should not: both sides of the invariant get tested
severities = st.sampled_from(["critical", "CRITICAL", " p0 ", "P1", "warning", "Info", "p2", "info", "sev1", ""])
texts = st.one_of(
    st.text(min_size=1, max_size=40).filter(str.strip), st.text(min_size=1, max_size=40).filter(str.strip),
    st.text(max_size=3),
    st.builds(lambda c, n: c * n, st.characters(), st.sampled_from([1000, 1025, 25000])),
)
offsets = st.sampled_from([None, None, None, 0, -30, -3600, -86400 * 8, 60, 86400 * 365 * 10])


@pytest.fixture
def sessions(connect):
    """An admin's session to look, and an app's (a login holding only monitoring_writer) to write: opened once
    for all the examples."""
    return connect(), connect("monitoring_writer")


@PROPERTY
@given(alert_type=texts, severity=severities, title=texts, message=texts | st.none(),
       details=json_values | st.builds(lambda n: {"blob": "x" * n}, st.sampled_from([10, 70_000])),
       created=offsets, occurred=offsets)
def test_a_writer_insert_is_refused_clearly_or_stored_and_sendable(sessions, alert_type, severity, title, message,
                                                                    details, created, occurred):
    admin, writer = sessions
    before = admin.execute("SELECT count(*), coalesce(sum(occurrence_count), 0) FROM monitoring_alerts").fetchone()
    now = admin.execute("SELECT now()").fetchone()[0]
    at = lambda offset: None if offset is None else now + dt.timedelta(seconds=offset)  # noqa: E731
    try:
        writer.execute(
            "INSERT INTO monitoring_alerts (alert_type, severity, title, message, details, created_at, occurred_at) "
            "VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()), coalesce(%s, %s, now()))",
            (alert_type, severity, title, message, Jsonb(details), at(created), at(occurred), at(created)))
    except CLEAR_ERRORS as error:
        event(f"refused: {type(error).__name__}")
        assert str(error).strip()
        after = admin.execute("SELECT count(*), coalesce(sum(occurrence_count), 0) FROM monitoring_alerts").fetchone()
        assert after == before, "a refused INSERT wrote something"
        return
    event("stored")
    for provider, action, alert in admin.execute(
            "SELECT d.provider, d.action, to_jsonb(a) FROM monitoring_deliveries AS d "
            "JOIN monitoring_alerts AS a ON a.id = d.alert_id WHERE a.id = (SELECT max(id) FROM monitoring_alerts)"):
        request = build_request(PROVIDERS[provider], [Delivery(1, 1, provider, action, "", {}, "pgalert-x-1", alert)])
        assert isinstance(request, HttpRequest), request
        assert_within_limits(provider, request)
