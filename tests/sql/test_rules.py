"""Rules turn events into alerts: every rule type, grouping, self-resolution, SQL rules, errors, backtests."""

from __future__ import annotations

import datetime as dt
import threading

import psycopg
import pytest

T = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
M = dt.timedelta(minutes=1)
SEED_RULES = ["api_response_degradation", "api_response_warning", "auth_failure_spike", "database_connection_failure",
              "error_rate_spike", "memory_usage_high", "payment_failure_critical"]


def events(conn, event_type, times, value=None, labels="{}"):
    conn.execute("INSERT INTO monitoring_events (event_type, value, labels, occurred_at) "
                 "SELECT %s, %s, %s::jsonb, t FROM unnest(%s::timestamptz[]) AS t", (event_type, value, labels, list(times)))


def evaluate(conn, at, rule=None):
    rows = conn.execute("SELECT rule_name, group_key, observed, fired, alert_id, error FROM monitoring_evaluate_alert_rules(%s)", (at,)).fetchall()
    return [r for r in rows if rule is None or r[0] == rule]


def alerts(conn):
    return conn.execute("SELECT alert_type, severity, status, source FROM monitoring_alerts ORDER BY id").fetchall()


def only(conn, *rules):
    conn.execute("UPDATE monitoring_alert_rules SET enabled = rule_name = ANY(%s)", (list(rules),))


def test_the_seed_rules_and_events(conn):
    names = [r[0] for r in conn.execute("SELECT rule_name FROM monitoring_alert_rules ORDER BY 1").fetchall()]
    assert names == SEED_RULES
    conn.execute("""INSERT INTO monitoring_events (event_type, value, labels) VALUES
      ('payment_failure', NULL, '{"gateway": "mercadopago"}'),
      ('api_response_time', 2350, '{"route": "/bookings"}'),
      ('memory_usage_percent', 91.5, '{"host": "web-2"}');""")
    assert [r[0] for r in conn.execute("SELECT * FROM monitoring_evaluate_alert_rules();").fetchall()] == SEED_RULES
    assert alerts(conn) == [("memory_usage_high", "warning", "open", '{"host": "web-2"}')]


def test_a_count_rule_fires_from_the_insert_that_crosses_it(conn, connect):
    conn.execute("INSERT INTO monitoring_events (event_type) VALUES ('payment_failure'), ('payment_failure')")
    assert alerts(conn) == []
    writer = connect("monitoring_writer")
    writer.execute("INSERT INTO monitoring_events (event_type) VALUES ('payment_failure')")
    # no evaluator has run: the alert exists as soon as the crossing event commits
    row = conn.execute("SELECT alert_type, severity, occurred_at = (SELECT max(occurred_at) FROM monitoring_events) "
                       "FROM monitoring_alerts").fetchone()
    assert row == ("payment_failure_critical", "critical", True)
    assert [p for (p,) in conn.execute("SELECT provider FROM monitoring_deliveries ORDER BY id").fetchall()] == ["pagerduty", "slack", "sentry"]
    writer.execute("INSERT INTO monitoring_events (event_type) SELECT 'payment_failure' FROM generate_series(1, 10)")
    assert conn.execute("SELECT count(*) FROM monitoring_alerts").fetchone() == (1,)  # one open alert per rule


def test_writers_adding_to_the_same_counts_never_wait_for_each_other(connect):
    first, second = connect("monitoring_writer"), connect("monitoring_writer")
    first.autocommit = second.autocommit = False
    first.execute("INSERT INTO monitoring_events (event_type) VALUES ('payment_failure')")  # holds its counts
    second.execute("SET lock_timeout = '2s'")
    second.execute("INSERT INTO monitoring_events (event_type) SELECT 'payment_failure' FROM generate_series(1, 3)")
    second.commit()
    first.commit()
    observer = connect()
    assert observer.execute("SELECT count(*) FROM monitoring_alerts WHERE alert_type = 'payment_failure_critical'").fetchone() == (1,)
    counted = observer.execute("SELECT sum(events) FROM _monitoring_rule_counts c JOIN monitoring_alert_rules r ON r.id = c.rule_id "
                               "WHERE r.rule_name = 'payment_failure_critical'").fetchone()
    assert counted == (4,)


def test_compacting_counts_keeps_every_sum(conn):
    conn.execute("""INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, threshold, group_by, severity)
                    VALUES ('busy_hosts', 'count', 'request', 1e9, '{host}', 'info')""")
    conn.execute("""INSERT INTO monitoring_events (event_type, labels, occurred_at)
                    SELECT 'request', jsonb_build_object('host', 'web-' || g % 3), now() - make_interval(secs => g % 280)
                    FROM generate_series(1, 900) AS g""")
    sums = """SELECT c.group_key, sum(c.events), count(*) FROM _monitoring_rule_counts c
              JOIN monitoring_alert_rules r ON r.id = c.rule_id WHERE r.rule_name = 'busy_hosts' GROUP BY 1 ORDER BY 1"""
    before = conn.execute(sums).fetchall()
    assert [(g["host"], n) for g, n, _ in before] == [("web-0", 300), ("web-1", 300), ("web-2", 300)]
    assert conn.execute("SELECT monitoring_compact_rule_counts()").fetchone()[0] > 0
    after = conn.execute(sums).fetchall()
    assert [(g, n) for g, n, _ in after] == [(g, n) for g, n, _ in before]
    assert all(rows_after < rows_before / 2 for (_, _, rows_after), (_, _, rows_before) in zip(after, before, strict=True))
    # nothing the window still reaches is dropped; everything it no longer reaches is
    conn.execute("SELECT monitoring_compact_rule_counts(now() + interval '10 minutes')")
    assert conn.execute(sums).fetchall() == []


def test_a_new_count_rule_counts_the_events_already_in_its_window(conn):
    events(conn, "login_failure", [dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)] * 2)
    conn.execute("""INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, threshold, severity)
                    VALUES ('login_failures', 'count', 'login_failure', 3, 'warning')""")
    conn.execute("INSERT INTO monitoring_events (event_type) VALUES ('login_failure')")
    assert conn.execute("SELECT count(*) FROM monitoring_alerts WHERE alert_type = 'login_failures'").fetchone() == (1,)


def test_fired_alerts_resolve_themselves_once_clear_for_clear_after(conn):
    only(conn, "payment_failure_critical")
    events(conn, "payment_failure", [T - 3 * M, T - 2 * M, T - M])
    (row,) = evaluate(conn, T)
    assert row[3] is True and alerts(conn)[0][2] == "open"
    evaluate(conn, T + M)  # window (T-4, T+1]: all three events, still firing
    evaluate(conn, T + 2 * M)  # window (T-3, T+2]: two events, clear since now
    evaluate(conn, T + 6 * M)
    assert alerts(conn)[0][2] == "open"
    evaluate(conn, T + 7 * M)  # clear for 5 minutes
    assert conn.execute("SELECT status, resolved_by FROM monitoring_alerts").fetchone() == ("resolved", "pgalert")
    assert ("pagerduty", "resolve") in conn.execute("SELECT provider, action FROM monitoring_deliveries").fetchall()
    events(conn, "payment_failure", [T + 11 * M] * 3)
    evaluate(conn, T + 11 * M)
    assert [a[2] for a in alerts(conn)] == ["resolved", "open"]  # a new episode, a new alert


def test_a_condition_back_before_clear_after_keeps_the_alert(conn):
    only(conn, "database_connection_failure")
    events(conn, "database_connection_failure", [T])
    evaluate(conn, T)
    evaluate(conn, T + 2 * M)  # clear since T+2
    events(conn, "database_connection_failure", [T + 3 * M])
    evaluate(conn, T + 3 * M)
    evaluate(conn, T + 7 * M)
    assert conn.execute("SELECT count(*), min(status) FROM monitoring_alerts").fetchone() == (1, "open")


def test_aggregate_p95_needs_its_minimum_samples(conn):
    only(conn, "api_response_degradation", "api_response_warning")
    events(conn, "api_response_time", [T - M] * 4, value=5000)
    assert [r[3] for r in evaluate(conn, T)] == [False, False]
    events(conn, "api_response_time", [T - M], value=2000)
    rows = evaluate(conn, T + M)
    assert [(r[0], r[3]) for r in rows] == [("api_response_degradation", True), ("api_response_warning", True)]
    assert rows[0][2] == pytest.approx(5000)
    events(conn, "api_response_time", [T + M] * 100, value=1000)
    evaluate(conn, T + 2 * M)
    assert conn.execute("SELECT count(*) FROM monitoring_alerts").fetchone() == (2,)


def test_grouped_rule_fires_one_alert_per_group(conn):
    only(conn, "memory_usage_high")
    events(conn, "memory_usage_percent", [T - M], value=91.5, labels='{"host": "web-2"}')
    events(conn, "memory_usage_percent", [T - M], value=95, labels='{"host": "web-3"}')
    events(conn, "memory_usage_percent", [T - M], value=40, labels='{"host": "web-1"}')
    events(conn, "memory_usage_percent", [T - 2 * M], value=99, labels='{"host": "web-1"}')  # last value wins
    fired = sorted((r[1]["host"], r[3]) for r in evaluate(conn, T))
    assert fired == [("web-1", False), ("web-2", True), ("web-3", True)]
    assert sorted(a[3] for a in alerts(conn)) == ['{"host": "web-2"}', '{"host": "web-3"}']


def test_spike_against_the_previous_window(conn):
    only(conn, "auth_failure_spike")
    events(conn, "auth_failure", [T - 15 * M])  # the stream is older than both windows: the baseline is whole
    events(conn, "auth_failure", [T - 8 * M] * 10)  # baseline window (T-10, T-5]
    events(conn, "auth_failure", [T - 2 * M] * 39)
    assert evaluate(conn, T)[0][3] is False  # 290%: under 300
    events(conn, "auth_failure", [T - M])
    row = evaluate(conn, T + dt.timedelta(seconds=61))[0]
    assert row[3] is True and row[2] == pytest.approx(300)


def test_spike_is_silent_until_a_full_baseline_exists(conn):
    only(conn, "auth_failure_spike")
    conn.execute("UPDATE monitoring_alert_rules SET created_at = %s", (T - dt.timedelta(days=1),))
    events(conn, "auth_failure", [T - 8 * M] * 10)  # the stream began inside the baseline window
    events(conn, "auth_failure", [T - M] * 100)
    assert evaluate(conn, T)[0][3] is False


def test_a_spike_rule_created_now_over_an_old_stream_speaks_at_once(conn):
    only(conn, "auth_failure_spike")
    conn.execute("UPDATE monitoring_alert_rules SET created_at = %s", (T,))  # the baseline is in the data, not the rule
    events(conn, "auth_failure", [T - 30 * M, T - 8 * M] + [T - 7 * M] * 9)
    events(conn, "auth_failure", [T - M] * 100)
    assert evaluate(conn, T)[0][3] is True


def test_absence_per_host(conn):
    conn.execute("""INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, window_size, threshold, group_by, severity)
                    VALUES ('heartbeat_missing', 'absence', 'heartbeat', '2 minutes', 1, '{host}', 'critical')""")
    only(conn, "heartbeat_missing")
    events(conn, "heartbeat", [T - 3 * M, T - M], labels='{"host": "a"}')
    events(conn, "heartbeat", [T - 3 * M], labels='{"host": "b"}')
    rows = {r[1]["host"]: r[3] for r in evaluate(conn, T)}
    assert rows == {"a": False, "b": True}


def test_absence_without_any_events(conn):
    conn.execute("""INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, window_size, threshold, severity)
                    VALUES ('no_payments', 'absence', 'payment_succeeded', '30 minutes', 1, 'warning')""")
    only(conn, "no_payments")
    assert evaluate(conn, T)[0][3] is True


def test_sql_rule_fires_per_row_as_the_restricted_role(conn):
    conn.execute("""INSERT INTO monitoring_alert_rules (rule_name, rule_type, query, severity) VALUES ('big_refund', 'sql',
        $$SELECT labels->>'order' AS group_key, value, 'refund over 1000' AS message FROM monitoring_events
          WHERE event_type = 'refund' AND value > 1000 AND occurred_at > now() - interval '10 years'$$, 'info')""")
    only(conn, "big_refund")
    events(conn, "refund", [T], value=5000, labels='{"order": "A-1"}')
    events(conn, "refund", [T], value=10, labels='{"order": "A-2"}')
    rows = evaluate(conn, T)
    assert [(r[1], r[3]) for r in rows] == [("A-1", True)]
    assert conn.execute("SELECT message FROM monitoring_alerts").fetchone()[0].startswith("refund over 1000")


SLEEPY_RULE = """INSERT INTO monitoring_alert_rules (rule_name, rule_type, query, query_timeout, severity)
                   VALUES ('sleepy', 'sql', 'SELECT 1 AS value FROM pg_sleep(3)', '200 ms', 'info')"""


def test_a_sql_rule_gets_its_own_job_which_enforces_its_query_timeout(conn):
    conn.execute(SLEEPY_RULE)
    command, rule = conn.execute("SELECT command, rule_name FROM monitoring_schedules "
                                 "WHERE job_name = 'pgalert_rule_sleepy'").fetchone()
    assert (command, rule) == ("SET statement_timeout = '200ms'; SELECT monitoring_evaluate_sql_rule('sleepy')", "sleepy")
    conn.execute(command)  # no parameters: one simple query, as pg_cron sends it in libpq mode
    error = conn.execute("SELECT last_error FROM monitoring_alert_rules WHERE rule_name = 'sleepy'").fetchone()[0]
    assert error == "query canceled after running longer than its query_timeout (00:00:00.2)"
    assert ("rule_evaluation_error", "warning", "open", "sleepy") in alerts(conn)
    assert conn.execute("SELECT count(*) FROM monitoring_alerts WHERE alert_type = 'sleepy'").fetchone() == (0,)


def test_the_minute_job_leaves_sql_rules_to_their_own_jobs(conn):
    conn.execute("""INSERT INTO monitoring_alert_rules (rule_name, rule_type, query, severity)
                    VALUES ('quick', 'sql', 'SELECT 1 AS value', 'info')""")
    minute_job = conn.execute("SELECT command FROM monitoring_schedules WHERE job_name = 'pgalert_evaluate_rules'").fetchone()[0]
    names = [r[0] for r in conn.execute(minute_job.replace("SELECT ", "SELECT * FROM ", 1)).fetchall()]
    assert names == SEED_RULES
    assert [r[0] for r in conn.execute("SELECT * FROM monitoring_evaluate_sql_rule('quick')").fetchall()] == ["quick"]
    assert conn.execute("SELECT count(*) FROM monitoring_alerts WHERE alert_type = 'quick'").fetchone() == (1,)
    # by hand, every due rule runs, sql rules included
    assert "quick" in [r[0] for r in evaluate(conn, dt.datetime.now(dt.UTC) + 2 * M)]


def test_a_sql_rule_job_follows_its_rule(conn):
    conn.execute(SLEEPY_RULE)
    jobs = lambda: conn.execute("SELECT job_name, rule_name FROM monitoring_schedules WHERE rule_name IS NOT NULL").fetchall()  # noqa: E731
    conn.execute("UPDATE monitoring_alert_rules SET rule_name = 'drowsy' WHERE rule_name = 'sleepy'")
    assert jobs() == [("pgalert_rule_drowsy", "drowsy")]
    conn.execute("UPDATE monitoring_alert_rules SET enabled = FALSE")
    assert jobs() == []
    conn.execute("UPDATE monitoring_alert_rules SET enabled = TRUE")
    conn.execute("UPDATE monitoring_alert_rules SET last_evaluated_at = now()")  # evaluation leaves jobs alone
    assert jobs() == [("pgalert_rule_drowsy", "drowsy")]
    conn.execute("DELETE FROM monitoring_alert_rules WHERE rule_name = 'drowsy'")
    assert jobs() == []


@pytest.mark.parametrize(("values", "message"), [
    ("('r', 'count', NULL, 3, NULL, 'critical')", "a count rule needs event_type"),
    ("('r', 'count', 'x', NULL, NULL, 'critical')", "a count rule needs a threshold"),
    ("('r', 'spike', 'x', -5, NULL, 'critical')", "must be positive"),
    ("('r', 'aggregate', 'x', 5, NULL, 'critical')", "an aggregate rule needs aggregate"),
    ("('r', 'count', 'x', 3, NULL, 'urgent')", "unknown severity"),
    ("('r', 'sql', NULL, NULL, 'SELEC 1', 'info')", "query does not run as monitoring_rule_runner"),
    ("('r', 'sql', NULL, NULL, 'SELECT * FROM monitoring_deliveries', 'info')", "permission denied"),
    ("('r', 'sql', NULL, NULL, 'SELECT 1; DROP TABLE monitoring_alerts', 'info')", "one SELECT statement"),
    ("('r', 'sql', NULL, NULL, 'SELECT * FROM monitoring_events a, monitoring_events b, monitoring_events c', 'info')", "over the limit"),
])
def test_invalid_rules_are_refused_with_what_is_wrong(conn, values, message):
    with pytest.raises(psycopg.Error, match=message):
        conn.execute(f"INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, threshold, query, severity) VALUES {values}")


def test_a_failing_rule_is_recorded_and_raised_and_the_others_still_run(conn):
    conn.execute("""INSERT INTO monitoring_alert_rules (rule_name, rule_type, query, severity)
                    VALUES ('broken', 'sql', 'SELECT 1 / (count(*) - count(*)) AS value FROM monitoring_events', 'info')""")
    only(conn, "broken", "database_connection_failure")
    events(conn, "database_connection_failure", [T])
    rows = {r[0]: r for r in evaluate(conn, T)}
    assert "division by zero" in rows["broken"][5] and rows["database_connection_failure"][3] is True
    assert conn.execute("SELECT last_error FROM monitoring_alert_rules WHERE rule_name = 'broken'").fetchone()[0] == "division by zero"
    assert ("rule_evaluation_error", "warning", "open", "broken") in alerts(conn)
    conn.execute("UPDATE monitoring_alert_rules SET query = 'SELECT 1 AS value WHERE false' WHERE rule_name = 'broken'")
    evaluate(conn, T + M)
    assert conn.execute("SELECT status FROM monitoring_alerts WHERE alert_type = 'rule_evaluation_error'").fetchone() == ("resolved",)


def test_a_bad_rule_never_fails_the_writers_insert(conn):
    conn.execute("UPDATE monitoring_alert_rules SET threshold = 'NaN' WHERE rule_name = 'payment_failure_critical'")
    conn.execute("INSERT INTO monitoring_events (event_type) VALUES ('payment_failure')")
    assert conn.execute("SELECT count(*) FROM monitoring_events").fetchone() == (1,)


def test_two_evaluations_at_once_never_double(connect):
    setup = connect()
    events(setup, "payment_failure", [T - M] * 5)
    events(setup, "memory_usage_percent", [T - M], value=99, labels='{"host": "x"}')
    sessions = [connect() for _ in range(3)]
    barrier = threading.Barrier(3)
    results = []

    def run(session):
        with session.transaction():
            barrier.wait()
            results.append(evaluate(session, T))

    threads = [threading.Thread(target=run, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r[0] for rows in results for r in rows if r[3]) == ["memory_usage_high", "payment_failure_critical"]
    assert setup.execute("SELECT count(*) FROM monitoring_alerts").fetchone() == (2,)


def test_rules_are_due_by_evaluate_every(conn):
    evaluate(conn, T)
    skipped = conn.execute("SELECT rule_name, skipped FROM monitoring_evaluate_alert_rules(%s)", (T + dt.timedelta(seconds=30),)).fetchall()
    assert sorted(name for name, _ in skipped) == sorted(SEED_RULES) and all(s.startswith("not due until") for _, s in skipped)
    evaluated = conn.execute("SELECT rule_name FROM monitoring_evaluate_alert_rules(%s) WHERE skipped IS NULL", (T + M,)).fetchall()
    assert len(evaluated) == len(SEED_RULES)


def test_backtest_lists_what_would_have_fired(conn):
    events(conn, "payment_failure", [T + dt.timedelta(seconds=s) for s in (0, 10, 20)])
    events(conn, "payment_failure", [T + dt.timedelta(minutes=30, seconds=s) for s in (0, 5, 10, 15)])
    rows = conn.execute("SELECT * FROM monitoring_backtest_rule('payment_failure_critical', %s, %s)", (T - M, T + 2 * dt.timedelta(hours=1))).fetchall()
    assert [(r[0] - T, r[3] - T) for r in rows] == [(M, 5 * M), (31 * M, 36 * M)]  # windows exclude their start
    assert conn.execute("SELECT count(*) FROM monitoring_alerts").fetchone() == (0,)  # nothing fired for real
    with pytest.raises(psycopg.errors.NoDataFound):
        conn.execute("SELECT * FROM monitoring_backtest_rule('nope', now(), now() + interval '1 hour')")


def test_partitions_are_created_ahead_rows_moved_and_old_days_dropped(conn):
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=6)
    events(conn, "x", [far])
    assert conn.execute("SELECT tableoid::regclass::text FROM monitoring_events").fetchone() == ("monitoring_events_default",)
    made = conn.execute("SELECT * FROM monitoring_maintain_event_partitions(7)").fetchall()
    name = "monitoring_events_" + far.strftime("%Y%m%d")
    assert (name, "created") in made
    assert conn.execute("SELECT tableoid::regclass::text FROM monitoring_events").fetchone() == (name,)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    dropped = [n for n, action in conn.execute("SELECT * FROM monitoring_maintain_event_partitions(0, %s)", (later,)).fetchall() if action == "dropped"]
    assert name in dropped and conn.execute("SELECT count(*) FROM monitoring_events").fetchone() == (0,)


def test_health_check_results_become_events(conn):
    conn.execute("INSERT INTO monitoring_health_checks (name, url) VALUES ('api', 'https://example.test/health')")
    (check,) = conn.execute("SELECT * FROM monitoring_claim_health_checks()").fetchall()
    assert conn.execute("SELECT * FROM monitoring_claim_health_checks()").fetchall() == []  # claimed once
    conn.execute("SELECT monitoring_record_health_check(%s, 200, 123.4, NULL)", (check[0],))
    conn.execute("SELECT monitoring_record_health_check(%s, 503, 80, NULL)", (check[0],))
    conn.execute("SELECT monitoring_record_health_check(%s, NULL, NULL, 'timed out after 5s')", (check[0],))
    rows = conn.execute("SELECT event_type, value, labels->>'reason' FROM monitoring_events ORDER BY received_at, event_type").fetchall()
    assert rows == [("api_response_time", 123.4, None), ("api_response_time", 80.0, None),
                    ("health_check_failure", 80.0, "HTTP 503, expected 200"), ("health_check_failure", None, "timed out after 5s")]


def test_writer_can_copy_events(connect):
    writer = connect("monitoring_writer")
    with writer.cursor().copy("COPY monitoring_events (event_type, value) FROM STDIN") as copy:
        for i in range(100):
            copy.write_row(("application_error", i))
    assert connect().execute("SELECT count(*) FROM monitoring_events").fetchone() == (100,)
    assert connect().execute("SELECT count(*) FROM monitoring_alerts WHERE alert_type = 'error_rate_spike'").fetchone() == (1,)


def test_a_second_evaluation_within_a_minute_says_which_rules_it_skipped_and_p_force_runs_them(conn):
    only(conn, "payment_failure_critical")
    events(conn, "payment_failure", [T - M] * 3)
    first = conn.execute("SELECT rule_name, fired, skipped FROM monitoring_evaluate_alert_rules(%s)", (T,)).fetchall()
    assert first == [("payment_failure_critical", True, None)]
    again = conn.execute("SELECT rule_name, observed, fired, skipped FROM monitoring_evaluate_alert_rules(%s)",
                         (T + dt.timedelta(seconds=20),)).fetchall()
    assert len(again) == 1 and again[0][:3] == ("payment_failure_critical", 3, False)
    assert again[0][3].startswith("not due until") and "p_force => TRUE" in again[0][3]
    forced = conn.execute("SELECT rule_name, observed, skipped FROM monitoring_evaluate_alert_rules(%s, p_force => TRUE)",
                          (T + dt.timedelta(seconds=20),)).fetchall()
    assert forced == [("payment_failure_critical", 3, None)]
    assert conn.execute("SELECT count(*) FROM monitoring_alerts").fetchone() == (1,)  # still deduplicated
