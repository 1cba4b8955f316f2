"""The dispatcher's SQL interface: claim with SKIP LOCKED, ordering, leases, results, pacing."""

from __future__ import annotations

import datetime as dt
import json
import threading

from psycopg.types.json import Jsonb

from tests.helpers import SEED_CRITICAL, deliveries

CLAIM = "SELECT delivery_id, attempt, provider, action, provider_key FROM monitoring_claim_deliveries(%s, %s, %s)"


def claim(conn, who="d1", limit=100, lease="60 seconds"):
    return conn.execute(CLAIM, (who, limit, lease)).fetchall()


def result(delivery_id, outcome, attempt=1, **extra):
    now = dt.datetime.now(dt.UTC).isoformat()
    return {"delivery_id": delivery_id, "attempt": attempt, "outcome": outcome, "started_at": now, "finished_at": now, **extra}


def complete(conn, results, who="d1"):
    return conn.execute("SELECT monitoring_complete_deliveries(%s, %s)", (who, Jsonb(results))).fetchone()[0]


def test_claim_returns_the_alert_and_a_stable_provider_key(conn):
    conn.execute(SEED_CRITICAL)
    rows = conn.execute("SELECT * FROM monitoring_claim_deliveries('d1')").fetchall()
    assert [r[2] for r in rows] == ["pagerduty", "slack", "sentry"]
    keys = {r[6] for r in rows}
    assert len(keys) == 1 and keys.pop().endswith("-1")
    assert rows[0][7]["title"] == "Test" and rows[0][7]["severity"] == "critical"
    assert claim(conn, "d2") == []  # claimed rows are no longer due


def test_racing_dispatchers_never_claim_the_same_delivery(connect):
    setup = connect()
    setup.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) SELECT 't' || g, 'critical', 't' FROM generate_series(1, 300) g")
    sessions = [connect() for _ in range(4)]
    claimed: list[list[int]] = [[] for _ in sessions]
    barrier = threading.Barrier(len(sessions))

    def work(index, session):
        barrier.wait()
        while rows := claim(session, f"d{index}", 7):
            claimed[index].extend(r[0] for r in rows)

    threads = [threading.Thread(target=work, args=(i, s)) for i, s in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [d for c in claimed for d in c]
    assert len(every) == len(set(every)) == 900
    assert sum(1 for c in claimed if c) > 1  # the work was actually shared


def test_follow_ups_wait_for_the_trigger_to_finish(conn):
    conn.execute(SEED_CRITICAL)
    triggers = claim(conn)
    conn.execute("SELECT monitoring_acknowledge_alert(1)")
    assert claim(conn) == []  # acknowledge may not overtake an in-flight trigger
    complete(conn, [result(d, "succeeded") for d, *_ in triggers if _[1] == "pagerduty"])
    assert [(r[2], r[3]) for r in claim(conn)] == [("pagerduty", "acknowledge")]


def test_an_expired_lease_is_taken_over_and_the_late_result_is_only_recorded(conn):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'info', 't')")
    (first,) = claim(conn, "dead", lease="0 seconds")
    (second,) = claim(conn, "alive")
    assert second[0] == first[0] and second[1] == 2
    assert complete(conn, [result(first[0], "failed", attempt=1, error="late")], who="dead") == 0
    assert complete(conn, [result(second[0], "succeeded", attempt=2, http_status=200)], who="alive") == 1
    assert deliveries(conn) == [("slack", "trigger", "succeeded")]
    attempts = conn.execute("SELECT attempt, dispatcher, outcome FROM monitoring_delivery_attempts ORDER BY attempt").fetchall()
    assert attempts == [(1, "dead", "failed"), (2, "alive", "succeeded")]


def test_retry_goes_back_to_pending_at_its_time(conn):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'info', 't')")
    (row,) = claim(conn)
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)).isoformat()
    complete(conn, [result(row[0], "retry", http_status=503, error="busy", retry_at=later)])
    state = conn.execute("SELECT status, attempts, last_http_status, last_error, next_attempt_at > now() + interval '4 minutes' "
                         "FROM monitoring_deliveries").fetchone()
    assert state == ("pending", 1, 503, "busy", True)
    assert claim(conn) == []


def test_deferred_gives_the_attempt_back_and_records_no_attempt(conn):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'info', 't')")
    (row,) = claim(conn)
    complete(conn, [result(row[0], "deferred", retry_at=dt.datetime.now(dt.UTC).isoformat())])
    assert conn.execute("SELECT status, attempts FROM monitoring_deliveries").fetchone() == ("pending", 0)
    assert conn.execute("SELECT count(*) FROM monitoring_delivery_attempts").fetchone()[0] == 0


def test_release_makes_claimed_work_due_again(conn):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'info', 't')")
    (row,) = claim(conn, "d1")
    assert conn.execute("SELECT monitoring_release_deliveries('other', %s)", ([row[0]],)).fetchone()[0] == 0
    assert conn.execute("SELECT monitoring_release_deliveries('d1', %s)", ([row[0]],)).fetchone()[0] == 1
    assert claim(conn, "d2")[0][1] == 1  # attempt number given back


def test_a_critical_page_that_failed_everywhere_is_raised_elsewhere(conn):
    conn.execute(SEED_CRITICAL)
    rows = claim(conn)
    complete(conn, [result(r[0], "failed" if r[2] == "pagerduty" else "succeeded", http_status=400) for r in rows])
    raised = conn.execute("SELECT id, alert_type, severity, details->>'failed_alert_id' FROM monitoring_alerts WHERE id > 1").fetchone()
    assert raised[1:] == ("pgalert_delivery_failure", "critical", "1")
    assert sorted(p for p, _, _ in deliveries(conn, raised[0])) == ["opsgenie", "sentry", "slack", "webhook"]
    # its own failure does not raise another one
    for r in claim(conn):
        complete(conn, [result(r[0], "failed", http_status=500)])
    assert conn.execute("SELECT count(*) FROM monitoring_alerts").fetchone()[0] == 2


def test_no_second_alarm_when_another_pager_got_through(conn):
    conn.execute("INSERT INTO monitoring_routes (alert_type, severity, provider) VALUES ('pay', 'critical', 'pagerduty'), ('pay', 'critical', 'opsgenie')")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('pay', 'critical', 't')")
    rows = claim(conn)
    complete(conn, [result(r[0], "failed" if r[2] == "pagerduty" else "succeeded") for r in rows])
    assert conn.execute("SELECT count(*) FROM monitoring_alerts").fetchone()[0] == 1


def test_pacing_grants_a_burst_then_defers_and_a_pause_holds_everyone(conn, connect):
    grant = "SELECT granted, next_free_at > clock_timestamp() FROM monitoring_reserve_send_slots('slack', %s, '1 second', 3)"
    assert conn.execute(grant, (5,)).fetchone() == (3, True)
    assert connect().execute(grant, (1,)).fetchone() == (0, True)  # another dispatcher sees the same budget
    conn.execute("SELECT monitoring_pause_provider('pagerduty', now() + interval '1 minute')")
    assert conn.execute("SELECT granted FROM monitoring_reserve_send_slots('pagerduty', 10, '0.5 seconds', 10)").fetchone() == (0,)


PACED_CLAIM = ("SELECT delivery_id, provider FROM monitoring_claim_deliveries(%s, 100, '60 seconds', %s) "
               "ORDER BY delivery_id")
PD_PACE = Jsonb({"pagerduty": {"interval": 1, "burst": 2}})


def test_the_claim_reserves_the_pace_and_leaves_the_rest_pending_at_their_slots(conn, connect):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) "
                 "SELECT 'paced_' || g, 'critical', 't' FROM generate_series(1, 5) g")
    claimed = conn.execute(PACED_CLAIM, ("d1", PD_PACE)).fetchall()
    # a burst of 2 to PagerDuty; the other providers are not paced in this claim
    assert [p for _, p in claimed].count("pagerduty") == 2 and [p for _, p in claimed].count("slack") == 5
    waiting = conn.execute("SELECT status, claimed_by, attempts, extract(EPOCH FROM next_attempt_at - now())::numeric(4, 1) "
                           "FROM monitoring_deliveries WHERE provider = 'pagerduty' AND status <> 'sending' ORDER BY id").fetchall()
    # pending, untouched attempts, each at its own slot one interval apart (the next one is due within a second)
    assert [(s, c, a) for s, c, a, _ in waiting] == [("pending", None, 0)] * 3
    slots = [float(w[3]) for w in waiting]
    assert 0 <= slots[0] <= 1.0 and [round(b - a, 1) for a, b in zip(slots, slots[1:], strict=False)] == [1.0, 1.0]
    # the pace is shared: another dispatcher claiming at once gets no PagerDuty send either
    assert all(p != "pagerduty" for _, p in connect().execute(PACED_CLAIM, ("d2", PD_PACE)).fetchall())


def test_a_paced_claim_honours_a_pause_and_takes_a_lease_over_cleanly(conn):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'critical', 't')")
    conn.execute("SELECT * FROM monitoring_claim_deliveries('dead', 100, '0 seconds')")  # its lease ends at once
    conn.execute("SELECT monitoring_pause_provider('pagerduty', now() + interval '1 minute')")  # a 429 said wait
    claimed = conn.execute(PACED_CLAIM, ("alive", PD_PACE)).fetchall()
    assert "pagerduty" not in [p for _, p in claimed] and len(claimed) == 2
    assert conn.execute("SELECT status, claimed_by, next_attempt_at > now() + interval '50 seconds' "
                        "FROM monitoring_deliveries WHERE provider = 'pagerduty'").fetchone() == ("pending", None, True)


def test_a_429_result_pauses_the_provider_for_every_dispatcher(conn):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'info', 't')")
    (row,) = claim(conn)
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)).isoformat()
    complete(conn, [result(row[0], "retry", http_status=429, retry_at=later, pause=True)])
    assert conn.execute("SELECT granted FROM monitoring_reserve_send_slots('slack', 1, '1 second', 1)").fetchone() == (0,)


def test_queue_view_and_next_due(conn):
    assert conn.execute("SELECT monitoring_next_delivery_due()").fetchone() == (None,)
    conn.execute(SEED_CRITICAL)
    rows = conn.execute("SELECT provider, pending, sending, due FROM monitoring_delivery_queue ORDER BY provider").fetchall()
    assert rows == [("pagerduty", 1, 0, 1), ("sentry", 1, 0, 1), ("slack", 1, 0, 1)]
    assert conn.execute("SELECT monitoring_next_delivery_due() <= now()").fetchone() == (True,)


def test_the_dispatchers_result_rows_are_understood_by_sql(conn):
    from dispatcher.providers.base import Delivery, Verdict
    from dispatcher.worker import result_row

    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'info', 't')")
    (row,) = claim(conn)
    now = dt.datetime.now(dt.UTC)
    delivery = Delivery(row[0], row[1], "slack", "trigger", "", {}, row[4], {})
    sent = result_row(delivery, Verdict("failed", "HTTP 404: channel_not_found", "ref-1"), now, now, 404, None)
    assert complete(conn, [json.loads(json.dumps(sent))]) == 1
    stored = conn.execute("SELECT status, last_http_status, last_error, provider_reference, completed_at = %s "
                          "FROM monitoring_deliveries", (now,)).fetchone()
    assert stored == ("failed", 404, "HTTP 404: channel_not_found", "ref-1", True)


def test_claiming_and_recording_read_only_their_rows_even_when_statistics_are_stale(conn):
    # statistics taken while the queue was nearly empty, then a burst: the state the queue is in after every
    # storm until autovacuum catches up. A plan chosen from those statistics once walked the whole queue.
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) SELECT 'calm' || g, 'critical', 't' FROM generate_series(1, 30) g")
    conn.execute("UPDATE monitoring_deliveries SET status = 'succeeded', completed_at = now()")
    conn.execute("ANALYZE monitoring_deliveries")
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) SELECT 'storm' || g, 'critical', 't' FROM generate_series(1, 5000) g")
    queued = conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE completed_at IS NULL").fetchone()[0]

    def rows_read() -> int:  # this session's statistics, flushed when it goes idle after the first statement
        conn.execute("SELECT pg_stat_force_next_flush()")

        return conn.execute("SELECT seq_tup_read + idx_tup_fetch FROM pg_stat_user_tables "
                            "WHERE relid = 'monitoring_deliveries'::regclass").fetchone()[0]

    before = rows_read()
    claimed = claim(conn, limit=24)
    read = rows_read() - before
    assert len(claimed) == 24 and queued >= 15000
    assert 24 <= read < 500, f"one claim of 24 read {read} rows of a queue of {queued}"
    before = rows_read()
    assert complete(conn, [result(d, "succeeded") for d, *_ in claimed]) == 24
    read = rows_read() - before
    assert 24 <= read < 500, f"recording 24 results read {read} rows of a queue of {queued}"


def test_a_pace_that_allows_every_send_due_is_reserved_in_one_step_then_the_next_send_waits_its_slot(conn):
    # interval 60 s and a burst of 3 (120 s of tolerance): the first claims find the pace allowing all that is due
    # (the short path), the last does not (the general one); the row ends where granting one send at a time puts it
    pace = Jsonb({"pagerduty": {"interval": 60, "burst": 3}})

    def raise_and_claim(count: int, tag: str) -> int:
        conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) "
                     "SELECT 'pace_' || %s || g, 'critical', 't' FROM generate_series(1, %s) g", (tag, count))
        return [p for _, p in conn.execute(PACED_CLAIM, ("d1", pace)).fetchall()].count("pagerduty")

    assert raise_and_claim(2, "a") == 2
    assert raise_and_claim(1, "b") == 1
    assert raise_and_claim(1, "c") == 0
    ahead = conn.execute("SELECT extract(EPOCH FROM theoretical_arrival - now()) FROM _monitoring_pacing "
                         "WHERE provider = 'pagerduty'").fetchone()[0]
    assert 170 < ahead <= 180  # three sends of 60 s from the first claim
    waiting = conn.execute("SELECT status, extract(EPOCH FROM next_attempt_at - now()) FROM monitoring_deliveries "
                           "WHERE provider = 'pagerduty' AND status <> 'sending'").fetchall()
    assert len(waiting) == 1 and waiting[0][0] == "pending" and 50 < waiting[0][1] <= 60  # the fourth slot


def test_a_claim_paces_two_channels_each_by_its_own_pace(conn):
    paces = Jsonb({"pagerduty": {"interval": 60, "burst": 1}, "slack": {"interval": 60, "burst": 5}})
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) "
                 "SELECT 'two_channels_' || g, 'critical', 't' FROM generate_series(1, 2) g")
    claimed = [p for _, p in conn.execute(PACED_CLAIM, ("d1", paces)).fetchall()]
    assert sorted(claimed) == ["pagerduty", "sentry", "sentry", "slack", "slack"]
    assert conn.execute("SELECT provider, status FROM monitoring_deliveries WHERE status <> 'sending'").fetchall() \
        == [("pagerduty", "pending")]
