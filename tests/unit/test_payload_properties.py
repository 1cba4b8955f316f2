"""Every stored alert, whatever it holds, becomes a request each provider accepts: within its documented
limits, and never an exception. Generated with Hypothesis, deterministically (derandomize), so a failure
here is a reproducible bug, not a flake."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatcher.providers.base import Delivery, HttpRequest, Verdict
from dispatcher.worker import build_request
from tests.helpers import PROVIDERS, assert_within_limits, json_values

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


texts = st.text()
# huge values are named here and made inside the test, so a failing example prints in a line
HUGE = {
    "ascii": lambda: "x" * 300_000,
    "emoji": lambda: "💳" * 100_000,
    "nul": lambda: "ñ\u0000" * 50_000,
    "object": lambda: {"blob": "y" * 2_000_000},
    "array": lambda: list(range(100_000)),
}
alerts = st.fixed_dictionaries({
    "id": st.integers(1, 2**62),
    "alert_type": texts,
    "severity": st.sampled_from(["critical", "warning", "info"]) | st.text(max_size=10),
    "priority": st.sampled_from(["P0", "P1", "P2"]) | st.none(),
    "title": texts,
    "message": texts | st.none(),
    "source": texts | st.none(),
    "dedup_key": texts | st.none(),
    "details": json_values,
    "occurrence_count": st.integers(1, 10**6),
    "created_at": st.just("2026-11-30T10:00:00+00:00"),
    "occurred_at": st.just("2026-11-30T09:59:00+00:00"),
    "status": st.sampled_from(["open", "acknowledged", "resolved"]),
})


def deliveries_for(alert: dict, provider: str, action: str) -> list[Delivery]:
    context = {"by": "alice", "note": "on it"} if action != "trigger" else {}
    return [Delivery(1, 1, provider, action, "", context, f"pgalert-abcd1234-{alert['id']}", alert)]


@PROPERTY
@given(alert=alerts, provider=st.sampled_from(sorted(PROVIDERS)),
       action=st.sampled_from(["trigger", "acknowledge", "resolve", "notify"]),
       huge=st.dictionaries(st.sampled_from(["title", "message", "source", "alert_type", "dedup_key", "details"]),
                            st.sampled_from(sorted(HUGE)), max_size=3))
def test_any_stored_alert_builds_a_request_within_the_providers_limits(alert, provider, action, huge):
    for field, kind in huge.items():
        value = HUGE[kind]()
        alert[field] = value if field == "details" or isinstance(value, str) else str(value)[:300_000]
    request = build_request(PROVIDERS[provider], deliveries_for(alert, provider, action))
    if isinstance(request, Verdict):  # only "this provider has nothing to say for this action" is allowed
        assert request.outcome == "skipped", request
        return
    assert_within_limits(provider, request)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
@pytest.mark.parametrize("field", ["title", "message", "source", "alert_type", "dedup_key", "details"])
@pytest.mark.parametrize("kind", sorted(HUGE))
def test_every_field_at_every_huge_size_stays_within_the_limits(provider, field, kind):
    alert = {"id": 1, "alert_type": "a", "severity": "critical", "priority": "P0", "title": "t", "message": "m",
             "source": "s", "dedup_key": "k", "details": {}, "occurrence_count": 1, "status": "open"}
    value = HUGE[kind]()
    alert[field] = value if field == "details" or isinstance(value, str) else str(value)[:300_000]
    request = build_request(PROVIDERS[provider], deliveries_for(alert, provider, "trigger"))
    assert isinstance(request, HttpRequest)
    assert_within_limits(provider, request)


class Broken:
    """A provider whose full payload builder has a bug: it can only build the minimal alert."""

    name = "pagerduty"

    def build(self, delivery: Delivery) -> HttpRequest | None:
        if delivery.alert.get("message"):
            raise AttributeError("'list' object has no attribute 'get'")
        return PROVIDERS["pagerduty"].build(delivery)


def test_a_payload_builder_bug_still_pages_with_title_severity_and_id():
    alert = {"id": 7, "alert_type": "payment_failure", "severity": "critical", "title": "Card payments failing",
             "message": "boom", "details": [1, 2]}
    request = build_request(Broken(), deliveries_for(alert, "pagerduty", "trigger"))
    assert isinstance(request, HttpRequest)
    event = json.loads(request.body)
    assert event["event_action"] == "trigger" and event["payload"]["severity"] == "critical"
    assert event["payload"]["summary"] == "Card payments failing" and event["payload"]["custom_details"]["alert_id"] == 7


def test_a_builder_that_cannot_even_build_the_minimal_page_fails_once_instead_of_retrying():
    class Hopeless:
        name = "pagerduty"

        def build(self, delivery: Delivery) -> HttpRequest | None:
            raise RuntimeError("no")

    verdict = build_request(Hopeless(), deliveries_for({"id": 1, "title": "t", "severity": "critical"}, "pagerduty", "trigger"))
    assert verdict == Verdict("failed", "internal error building the request: RuntimeError: no")
