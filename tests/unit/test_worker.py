"""The dispatcher's decisions, run against the in-memory connector and a scripted HTTP loop (tests/memory.py):
what is sent, deferred, retried, skipped, recorded and released, without PostgreSQL or a subprocess. The same
loops against a real server are tests/integration/test_dispatch.py."""

from __future__ import annotations

import threading

import psycopg
import pytest

from dispatcher.http import SendFailed
from dispatcher.metrics import Metrics
from dispatcher.providers import providers_from_env
from dispatcher.providers.base import Delivery, HttpResponse, Unconfigured
from dispatcher.providers.pagerduty import PagerDuty
from dispatcher.providers.slack import Slack
from dispatcher.retry import RetryPolicy
from dispatcher.settings import Pace, Settings
from dispatcher.worker import Dispatcher, pacing
from dispatcher.worker.inflight import InFlight
from tests.helpers import wait_until
from tests.memory import InMemoryConnector, InMemoryDatabase, ScriptedClient

KEY = "R0UTINGKEY0000000000000000000000"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/SECRETSECRET"


def dispatcher_for(database: InMemoryDatabase, client: ScriptedClient, *, env: dict | None = None,
                   **settings: object) -> Dispatcher:
    env = {"PAGERDUTY_INTEGRATION_KEY": KEY, "SLACK_WEBHOOK_URL": SLACK_URL} if env is None else env
    options = {"dispatcher_id": "memory:1", "pacing": {}, "poll_seconds": 0.2, "shutdown_seconds": 0.2,
               "health_checks": False, **settings}
    return Dispatcher(Settings(**options), providers_from_env(env), Metrics(), env=env,
                      connector=InMemoryConnector(database), client=client)


def claim_and_record(dispatcher: Dispatcher, database: InMemoryDatabase) -> None:
    """One turn of the claimer, then the recorder writing what the sends gave it: no threads."""
    with dispatcher.connector.session("test") as session:
        dispatcher.claim(session.queries, dispatcher.inflight.capacity())
        results = list(dispatcher.recorder.results)
        dispatcher.recorder.results.clear()
        dispatcher.recorder.complete(session, results)


@pytest.fixture
def running():
    """Start a dispatcher's threads; stopped and joined at the end of the test."""
    started: list[tuple[Dispatcher, threading.Thread]] = []

    def start(dispatcher: Dispatcher) -> Dispatcher:
        thread = threading.Thread(target=dispatcher.run, daemon=True)
        thread.start()
        started.append((dispatcher, thread))
        return dispatcher

    yield start
    for dispatcher, thread in started:
        dispatcher.stop()
        thread.join(10)
        assert not thread.is_alive(), "the dispatcher did not stop"


def test_a_due_delivery_is_sent_once_and_recorded_by_the_running_loops(running):
    database, client = InMemoryDatabase(), ScriptedClient()
    running(dispatcher_for(database, client))
    delivery = database.insert("pagerduty")
    wait_until(lambda: database.status(delivery) == "succeeded", timeout=10)
    assert len(client.sent) == 1 and KEY.encode() in client.sent[0].body
    assert [(a["delivery_id"], a["outcome"], a["http_status"]) for a in database.attempts] == [(delivery, "succeeded", 202)]


def test_a_retryable_reply_returns_the_delivery_to_pending_with_a_time_to_retry():
    database = InMemoryDatabase()
    dispatcher = dispatcher_for(database, ScriptedClient(lambda request: HttpResponse(503, {}, b"busy")))
    delivery = database.insert("pagerduty")
    claim_and_record(dispatcher, database)
    row = database.rows[delivery]
    assert (row.status, row.attempts, row.last_http_status) == ("pending", 1, 503)
    assert row.next_attempt_at.isoformat() == database.attempts[0]["retry_at"]
    assert row.next_attempt_at.isoformat() > database.attempts[0]["finished_at"]


def test_the_last_allowed_attempt_fails_the_delivery_and_says_why():
    database = InMemoryDatabase()
    dispatcher = dispatcher_for(database, ScriptedClient(lambda request: SendFailed("connection reset")),
                                retry=RetryPolicy(max_attempts=2, base_seconds=0.0, cap_seconds=0.0))
    delivery = database.insert("pagerduty")
    claim_and_record(dispatcher, database)
    assert database.status(delivery) == "pending"
    claim_and_record(dispatcher, database)
    row = database.rows[delivery]
    assert (row.status, row.attempts) == ("failed", 2)
    assert row.last_error == "gave up after 2 attempts; last: connection reset"


def test_an_unconfigured_provider_skips_its_delivery_with_the_reason_and_sends_nothing():
    database, client = InMemoryDatabase(), ScriptedClient()
    dispatcher = dispatcher_for(database, client, env={})
    delivery = database.insert("opsgenie")
    claim_and_record(dispatcher, database)
    assert client.sent == []
    assert (database.status(delivery), database.rows[delivery].last_error) == ("skipped", "OPSGENIE_API_KEY is not set")


def test_a_delivery_to_a_channel_added_since_the_last_load_reloads_the_channels_at_once():
    database, client = InMemoryDatabase(), ScriptedClient(lambda request: HttpResponse(200, {}, b"ok"))
    payments_url = "https://hooks.slack.com/services/T000/B000/PAYMENTS"
    env = {"PGALERT_CHANNEL_SECRETS": "SLACK_PAYMENTS=slack", "SLACK_PAYMENTS": payments_url}
    dispatcher = dispatcher_for(database, client, env=env)
    claim_and_record(dispatcher, database)  # channels loaded: none yet, and not again for 30 s unless forced
    database.channels.append(("slack-payments", "slack", {}, {"webhook_url": "env:SLACK_PAYMENTS"}))
    delivery = database.insert("slack-payments")
    claim_and_record(dispatcher, database)
    assert database.status(delivery) == "succeeded"
    assert [request.url for request in client.sent] == [payments_url]
    assert dispatcher.channels.kinds["slack-payments"] == "slack"


def test_a_channel_secret_in_an_error_is_redacted_before_it_is_recorded():
    database = InMemoryDatabase()
    payments_url = "https://hooks.slack.com/services/T000/B000/PAYMENTS"
    env = {"PGALERT_CHANNEL_SECRETS": "SLACK_PAYMENTS=slack", "SLACK_PAYMENTS": payments_url}
    database.channels.append(("slack-payments", "slack", {}, {"webhook_url": "env:SLACK_PAYMENTS"}))
    dispatcher = dispatcher_for(database, ScriptedClient(lambda request: SendFailed(f"could not reach {request.url}")),
                                env=env)
    delivery = database.insert("slack-payments")
    claim_and_record(dispatcher, database)
    error = database.rows[delivery].last_error
    assert "PAYMENTS" not in error and "[redacted]" in error


def test_slack_over_its_pace_sends_a_digest_and_defers_the_rest_to_its_next_slot():
    database, client = InMemoryDatabase(), ScriptedClient(lambda request: HttpResponse(200, {}, b"ok"))
    dispatcher = dispatcher_for(database, client, pacing={"slack": Pace(1.0, 3)}, batch_size=200)
    database.slots["slack"] = (2, 4.0)  # two slots now, the next in 4 s
    ids = [database.insert("slack") for _ in range(105)]
    claim_and_record(dispatcher, database)
    assert len(client.sent) == 2  # one alert alone, then one digest of 100 (Slack's most)
    assert [database.status(i) for i in ids[:101]] == ["succeeded"] * 101
    deferred = [database.rows[i] for i in ids[101:]]
    assert {(row.status, row.attempts) for row in deferred} == {("pending", 0)}
    assert not [a for a in database.attempts if a["delivery_id"] in ids[101:]]  # a deferral is no attempt


def test_a_pace_granting_nothing_defers_the_whole_batch_and_sends_nothing():
    database, client = InMemoryDatabase(), ScriptedClient()
    dispatcher = dispatcher_for(database, client, pacing={"slack": Pace(1.0, 3)})
    database.slots["slack"] = (0, 2.5)
    ids = [database.insert("slack") for _ in range(3)]
    claim_and_record(dispatcher, database)
    assert client.sent == [] and {database.status(i) for i in ids} == {"pending"}


def test_a_provider_without_digests_defers_each_excess_delivery_one_interval_after_the_other():
    batch = [Delivery(i, 1, "teams", "trigger", None, {}, None, {"id": i}) for i in range(4)]
    plan = pacing.plan("teams", batch, Pace(2.0, 1), PagerDuty(KEY), False, lambda *args: (1, 0.5))
    assert [[d.delivery_id for d in request] for request in plan.requests] == [[0]]
    assert [(d.delivery_id, seconds) for d, seconds in plan.deferred] == [(1, 0.5), (2, 2.5), (3, 4.5)]


def test_channels_the_claim_paces_are_those_without_digests_and_configured():
    providers = {"pagerduty": PagerDuty(KEY), "slack": Slack(SLACK_URL), "opsgenie": Unconfigured("opsgenie", "x")}
    paces = {"pagerduty": Pace(0.5, 10), "slack": Pace(1.0, 3), "opsgenie": Pace(1.0, 1)}
    assert pacing.paces_for_the_claim(paces, providers, {n: n for n in providers}) == {
        "pagerduty": {"interval": 0.5, "burst": 10}}


def test_a_channel_is_paced_as_its_kind_unless_named_itself():
    paces = {"slack": Pace(1.0, 3), "slack-ops": Pace(5.0, 1)}
    kinds = {"slack-payments": "slack", "slack-ops": "slack"}
    assert pacing.pace_of(paces, kinds, "slack-payments") == Pace(1.0, 3)
    assert pacing.pace_of(paces, kinds, "slack-ops") == Pace(5.0, 1)
    assert pacing.pace_of(paces, kinds, "teams") is None


def test_a_refused_batch_is_recorded_one_by_one_and_a_refused_result_stripped_to_what_must_be_kept():
    database = InMemoryDatabase()

    def answer(request):
        return SendFailed("poison") if b'"summary":"Poison' in request.body else HttpResponse(202, {}, b"{}")

    dispatcher = dispatcher_for(database, ScriptedClient(answer))
    good = database.insert("pagerduty")
    bad = database.insert("pagerduty", alert={"title": "Poison"})
    database.refuse = lambda result: "poison" in (result["error"] or "")
    claim_and_record(dispatcher, database)
    assert database.status(good) == "succeeded"
    row = database.rows[bad]
    assert (row.status, row.last_error) == ("pending", "unrecordable result (DataError)")
    assert database.complete_calls == [1, 1]  # the batch of two refused, then each alone


def test_results_wait_for_the_database_and_are_recorded_when_it_returns():
    database, client = InMemoryDatabase(), ScriptedClient()
    dispatcher = dispatcher_for(database, client)
    delivery = database.insert("pagerduty")
    with dispatcher.connector.session("test") as session:
        dispatcher.claim(session.queries, 10)
    database.down = True
    recorder = threading.Thread(target=dispatcher.recorder.run, daemon=True)
    recorder.start()
    wait_until(lambda: database.sessions.count("record") >= 2, timeout=10)  # tried, failed, tried again
    assert database.status(delivery) == "sending" and not database.attempts
    database.down = False
    wait_until(lambda: database.status(delivery) == "succeeded", timeout=10)
    dispatcher.stopping.set()
    recorder.join(10)
    assert not recorder.is_alive()


def test_deliveries_still_being_sent_at_shutdown_are_released_for_another_dispatcher():
    database = InMemoryDatabase()

    class Hanging(ScriptedClient):
        def submit(self, request, done):  # a reply that never comes
            self.sent.append(request)

    client = Hanging()
    dispatcher = dispatcher_for(database, client)
    ids = [database.insert("pagerduty") for _ in range(3)]
    with dispatcher.connector.session("test") as session:
        dispatcher.claim(session.queries, 10)
    assert {database.status(i) for i in ids} == {"sending"}
    dispatcher.stop()
    dispatcher._shutdown(0.0)
    assert {(database.rows[i].status, database.rows[i].attempts) for i in ids} == {("pending", 0)}
    assert client.closed


def test_an_old_schema_stops_the_claims_and_says_run_migrate_until_it_is_migrated(running):
    database, client = InMemoryDatabase(schema_version="0001"), ScriptedClient()
    dispatcher = running(dispatcher_for(database, client))
    delivery = database.insert("pagerduty")
    wait_until(lambda: dispatcher.metrics.problem, timeout=10)
    assert "run `pgalert migrate`" in dispatcher.metrics.problem and database.status(delivery) == "pending"
    database.schema_version = InMemoryDatabase().schema_version
    wait_until(lambda: database.status(delivery) == "succeeded", timeout=15)
    assert dispatcher.metrics.problem is None


def test_a_failing_scheduler_check_is_logged_and_delivery_goes_on(running):
    database, client = InMemoryDatabase(), ScriptedClient()
    database.scheduler = psycopg.errors.InsufficientPrivilege("permission denied for schema cron")
    dispatcher = running(dispatcher_for(database, client))
    delivery = database.insert("pagerduty")
    wait_until(lambda: database.status(delivery) == "succeeded", timeout=10)
    assert dispatcher.metrics.scheduler_running is None and dispatcher.metrics.problem is None


def test_a_scheduler_that_stopped_shows_on_the_health_state(running):
    database, client = InMemoryDatabase(), ScriptedClient()
    database.scheduler = (900.0, False)
    dispatcher = running(dispatcher_for(database, client))
    wait_until(lambda: dispatcher.metrics.scheduler_running is False, timeout=10)
    healthy, state = dispatcher.metrics.healthy(stale_after=60)
    assert state["scheduled_jobs_running"] is False


def test_the_claim_window_is_twice_the_sends_in_flight_and_refills_only_when_half_free():
    inflight = InFlight(concurrency=4)
    assert inflight.capacity() == 8
    inflight.claimed(range(8))
    assert inflight.capacity() == 0
    inflight.recorded(range(3))  # 3 of 8 free: less than half, keep waiting
    assert inflight.capacity() == 0
    inflight.recorded(range(3, 4))
    assert inflight.capacity() == 4
    inflight.recorded(range(4, 8))
    assert inflight.capacity() == 8


def test_a_dispatcher_on_a_server_that_became_a_standby_reconnects_until_it_finds_a_primary(running):
    database, client = InMemoryDatabase(), ScriptedClient()
    database.read_only = True
    dispatcher = running(dispatcher_for(database, client))
    delivery = database.insert("pagerduty")
    wait_until(lambda: database.sessions.count("claim") >= 3, timeout=15)  # it left and came back, again
    assert "read-only" in dispatcher.metrics.problem and database.status(delivery) == "pending"
    database.read_only = False  # the session now lands on the primary
    wait_until(lambda: database.status(delivery) == "succeeded", timeout=15)
    assert dispatcher.metrics.problem is None


class Gated(ScriptedClient):
    """The HTTP loop holding every submission until the test lets it run, as a busy loop does."""

    def __init__(self):
        super().__init__()
        self.waiting: list = []

    def submit(self, request, done):
        self.waiting.append((request, done))

    def let_run(self) -> None:
        waiting, self.waiting = self.waiting, []
        for request, done in waiting:
            ScriptedClient.submit(self, request, done)


def exit_code(dispatcher: Dispatcher, timeout: float = 10) -> int | None:
    """The code `run` returned, or None if it was still running after `timeout` seconds."""
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(dispatcher.run()), daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        dispatcher.stop()
    return code[0] if code else None


def test_a_dispatcher_whose_recorder_died_stops_sending_releases_what_it_holds_and_exits_non_zero():
    """A result that cannot be recorded is a message another dispatcher sends again after the lease: once the
    recorder is gone, nothing more may be sent, and the process must end so that its supervisor restarts it."""
    database, client = InMemoryDatabase(), Gated()
    dispatcher = dispatcher_for(database, client)

    def broken(session, results):
        raise RuntimeError("a bug in the recorder")

    dispatcher.recorder.complete = broken
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(dispatcher.run()), daemon=True)
    thread.start()
    first = database.insert("pagerduty")
    wait_until(lambda: client.waiting, timeout=10)
    client.let_run()  # sent; its result reaches the recorder, which dies on it
    wait_until(lambda: dispatcher.stopping.is_set(), timeout=10)
    second = database.insert("pagerduty")
    client.let_run()  # anything claimed before the claimer noticed is built now, and must not go out
    thread.join(10)
    assert not thread.is_alive() and code == [1]
    assert len(client.sent) == 1 and database.status(second) == "pending"
    assert database.rows[first].status == "sending"  # its lease will expire: the one send it cost
    assert "recorder" in dispatcher.metrics.problem


def test_results_the_dying_recorder_held_are_recorded_once_more_at_exit():
    database, client = InMemoryDatabase(), ScriptedClient()
    dispatcher = dispatcher_for(database, client)
    real = dispatcher.recorder.complete
    calls = []

    def fails_once(session, results):
        calls.append(len(results))
        if len(calls) == 1:
            raise RuntimeError("a bug in the recorder")
        real(session, results)

    dispatcher.recorder.complete = fails_once
    delivery = database.insert("pagerduty")
    assert exit_code(dispatcher) == 1
    assert database.status(delivery) == "succeeded" and len(client.sent) == 1


def test_a_thread_that_dies_stops_the_dispatcher():
    database, client = InMemoryDatabase(), ScriptedClient()
    dispatcher = dispatcher_for(database, client)
    dispatcher._listen_forever = lambda: (_ for _ in ()).throw(RuntimeError("a bug in the listener"))
    assert exit_code(dispatcher) == 1
    assert "listener" in dispatcher.metrics.problem


def test_texts_and_calls_whose_status_never_came_are_fetched_from_twilio_and_what_it_says_recorded():
    from dispatcher.providers.twilio import Twilio
    from dispatcher.worker.statuses import poll_once

    sms, call = "SM" + "1" * 32, "CA" + "2" * 32
    database = InMemoryDatabase()
    database.to_poll = [(7, "twilio", "sms", sms), (8, "twilio", "voice", call), (9, "slack", "slack", "1700.01")]
    answers = {f"/Messages/{sms}.json": b'{"sid": "%s", "status": "undelivered", "error_code": 30003}' % sms.encode(),
               f"/Calls/{call}.json": b'{"sid": "%s", "status": "no-answer", "error_code": null}' % call.encode()}
    client = ScriptedClient(lambda request: HttpResponse(200, {}, next(
        body for tail, body in answers.items() if request.url.endswith(tail))))
    twilio = Twilio("AC" + "0" * 32, "token", "+15005550006", api_url="https://api.twilio.test")
    with InMemoryConnector(database).session("test") as session:
        assert poll_once(session.queries, client, {"twilio": twilio, "slack": Slack(SLACK_URL)}, 1.0) == 2
    assert database.polled == [(sms, "undelivered", "30003"), (call, "no-answer", None)]
    assert [(r.method, r.url.split("/Accounts/")[1]) for r in client.sent] == [
        ("GET", f"{'AC' + '0' * 32}/Messages/{sms}.json"), ("GET", f"{'AC' + '0' * 32}/Calls/{call}.json")]
    assert all(r.headers["Authorization"].startswith("Basic ") for r in client.sent)
