"""Hardening: no role escapes its rights, a writer does not control the alert's clock, bad input never stops
a page, every size is bounded. Each test is written as the attacker or the careless app would act."""

from __future__ import annotations

import datetime as dt

import psycopg
import psycopg.sql
import pytest

from tests.helpers import SEED_CRITICAL

# --- a sql rule's query is untrusted code --------------------------------------------------------------

# Each query tries to climb from monitoring_rule_runner back to the session's own rights (pg_cron runs the
# job as its owner, a superuser) and then reads pg_authid through a query string run at execution time.
READ_SECRETS = "query_to_xml('SELECT count(*) AS n FROM pg_authid', TRUE, FALSE, '')::text"
ESCAPES = {
    "set_config_role": f"SELECT {READ_SECRETS} AS message FROM (SELECT set_config('role', 'none', TRUE)) AS e",
    "set_config_session_authorization":
        f"SELECT {READ_SECRETS} AS message FROM (SELECT set_config('session_authorization', 'postgres', TRUE)) AS e",
    "set_role_in_a_function": f"SELECT {READ_SECRETS} AS message FROM (SELECT careless_set_role()) AS e",
    "reset_role_in_a_function": f"SELECT {READ_SECRETS} AS message FROM (SELECT careless_reset_role()) AS e",
}


@pytest.fixture
def careless_helpers(conn):
    """Functions a DBA might have left behind, executable by anyone: they change the role when called."""
    conn.execute("""
        CREATE FUNCTION careless_set_role() RETURNS int LANGUAGE plpgsql AS $$
        BEGIN EXECUTE 'SET ROLE postgres'; RETURN 1; END $$;
        CREATE FUNCTION careless_reset_role() RETURNS int LANGUAGE plpgsql AS $$
        BEGIN EXECUTE 'RESET ROLE'; RETURN 1; END $$;
        GRANT EXECUTE ON FUNCTION careless_set_role(), careless_reset_role() TO PUBLIC;
    """)


def add_sql_rule(conn, name: str, query: str) -> None:
    conn.execute("INSERT INTO monitoring_alert_rules (rule_name, rule_type, query, severity) VALUES (%s, 'sql', %s, 'info')",
                 (name, query))


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_a_sql_rule_cannot_regain_the_rights_of_the_session_that_runs_it(conn, careless_helpers, escape):
    add_sql_rule(conn, escape, ESCAPES[escape])
    # as pg_cron runs it: a superuser session calling the rule's own job command
    conn.execute("SELECT monitoring_evaluate_sql_rule(%s)", (escape,))
    error = conn.execute("SELECT last_error FROM monitoring_alert_rules WHERE rule_name = %s", (escape,)).fetchone()[0]
    assert error and ("cannot set parameter" in error or "permission denied" in error), error
    leaked = conn.execute("SELECT count(*) FROM monitoring_alerts WHERE message LIKE '%<n>%'").fetchone()[0]
    assert leaked == 0


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_every_way_of_running_a_sql_rule_keeps_it_in_its_role(conn, connect, careless_helpers, escape):
    add_sql_rule(conn, escape, ESCAPES[escape])
    conn.execute("SELECT * FROM monitoring_evaluate_alert_rules()")
    with pytest.raises(psycopg.Error, match="cannot set parameter|permission denied"):
        conn.execute("SELECT * FROM monitoring_backtest_rule(%s, now() - interval '1 hour', now())", (escape,))
    assert conn.execute("SELECT count(*) FROM monitoring_alerts WHERE message LIKE '%<n>%'").fetchone() == (0,)


def test_a_sql_rule_runs_as_monitoring_rule_runner_and_reads_what_it_may(conn):
    add_sql_rule(conn, "who_am_i", "SELECT current_user || ' reads ' || count(*) || ' events' AS message FROM monitoring_events")
    conn.execute("SELECT monitoring_evaluate_sql_rule('who_am_i')")
    assert conn.execute("SELECT message FROM monitoring_alerts WHERE alert_type = 'who_am_i'").fetchone()[0].startswith(
        "monitoring_rule_runner reads 0 events")


def test_monitoring_rule_runner_holds_no_other_rights(conn):
    role = conn.execute("""SELECT rolsuper, rolinherit, rolcanlogin, rolcreaterole, rolcreatedb, rolbypassrls
                           FROM pg_roles WHERE rolname = 'monitoring_rule_runner'""").fetchone()
    assert role == (False, False, False, False, False, False)
    assert conn.execute("""SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
                           WHERE r.rolname = 'monitoring_rule_runner'
                              OR m.member = 'monitoring_rule_runner'::regrole""").fetchone() == (0,)


# --- no login can take the sandbox over (#35, 1) -----------------------------------------------------------

# What a function a caller made in its own session tries once the sandbox runs it as the sandbox's owner: every
# way of changing the two functions whose owner a rule's query runs as.
SANDBOX = "public._monitoring_rule_query_rows(text, timestamptz)"
TAKEOVERS = {
    "security_invoker": f"ALTER FUNCTION {SANDBOX} SECURITY INVOKER",
    "replace": "CREATE OR REPLACE FUNCTION public._monitoring_rule_query_plan(p_query text) RETURNS jsonb "
               "LANGUAGE sql AS 'SELECT NULL::jsonb'",
    "rename": f"ALTER FUNCTION {SANDBOX} RENAME TO gone",
    "drop": "DROP FUNCTION public._monitoring_rule_query_plan(text)",
    "grant": f"GRANT EXECUTE ON FUNCTION {SANDBOX} TO PUBLIC",
    "search_path": f"ALTER FUNCTION {SANDBOX} SET search_path = pg_temp, public",
    "owner": f"ALTER FUNCTION {SANDBOX} OWNER TO monitoring_reader",
    "leave_a_function_behind": "CREATE FUNCTION pg_temp.later() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "session_setting": "SELECT set_config('search_path', 'pg_temp, public', FALSE)",
}
SANDBOX_STATE = """SELECT p.proname, p.prosecdef, p.proowner::regrole::text, p.proconfig, md5(p.prosrc), p.proacl::text[]
                   FROM pg_proc AS p WHERE p.proname IN ('_monitoring_rule_query_rows', '_monitoring_rule_query_plan')
                   ORDER BY 1"""


def plant(session, ddl: str, volatility: str = "VOLATILE") -> None:
    """What any login may do: a function of its own session, which runs as whoever calls it."""
    session.execute(f"""CREATE FUNCTION pg_temp.take_over() RETURNS text LANGUAGE plpgsql {volatility} AS $f$
                        BEGIN EXECUTE {psycopg.sql.quote(ddl)}; RETURN current_user; END $f$""")
    session.execute("GRANT EXECUTE ON FUNCTION pg_temp.take_over() TO PUBLIC")


@pytest.mark.parametrize("takeover", sorted(TAKEOVERS))
def test_a_reader_cannot_change_the_sandbox_through_a_query_it_runs(conn, connect, takeover):
    before = conn.execute(SANDBOX_STATE).fetchall()
    reader = connect("monitoring_reader")
    plant(reader, TAKEOVERS[takeover])
    reader.execute("CREATE TEMP VIEW take_over_view AS SELECT pg_temp.take_over() AS message")
    reader.execute("GRANT SELECT ON take_over_view TO PUBLIC")
    for query in ("SELECT pg_temp.take_over() AS message", "SELECT message FROM take_over_view"):
        if takeover == "session_setting":  # allowed, and undone when the query returns
            reader.execute("SELECT * FROM _monitoring_rule_query_rows(%s, now())", (query,))
            continue
        with pytest.raises(psycopg.Error, match="read-only transaction|permission denied|must be member"):
            reader.execute("SELECT * FROM _monitoring_rule_query_rows(%s, now())", (query,))
    assert conn.execute(SANDBOX_STATE).fetchall() == before
    # nothing of it stays in the session either: no setting, no function for a later call to find
    assert reader.execute("SHOW search_path").fetchone()[0] == conn.execute("SHOW search_path").fetchone()[0]
    assert reader.execute("SELECT count(*) FROM pg_proc WHERE proname = 'later'").fetchone() == (0,)
    # and an admin's rule, evaluated as pg_cron does (a superuser session), still runs as the sandbox's role
    add_sql_rule(conn, "who", "SELECT current_user AS message")
    conn.execute("SELECT monitoring_evaluate_sql_rule('who')")
    assert conn.execute("SELECT message FROM monitoring_alerts WHERE alert_type = 'who'").fetchone() == ("monitoring_rule_runner",)


@pytest.mark.parametrize("takeover", ["security_invoker", "drop", "replace"])
def test_an_admin_cannot_change_the_sandbox_through_a_rule_it_saves(conn, connect, takeover):
    """Saving a rule plans its query, and planning folds an immutable function of constants: it runs then."""
    before = conn.execute(SANDBOX_STATE).fetchall()
    admin = connect("monitoring_admin")
    plant(admin, TAKEOVERS[takeover], volatility="IMMUTABLE")
    with pytest.raises(psycopg.Error, match="read-only transaction|non-volatile"):
        add_sql_rule(admin, "take_over", "SELECT pg_temp.take_over() AS message")
    with pytest.raises(psycopg.Error, match="read-only transaction|non-volatile"):
        admin.execute("SELECT * FROM _monitoring_rule_query_rows('SELECT pg_temp.take_over() AS message', now())")
    assert conn.execute(SANDBOX_STATE).fetchall() == before


def test_a_sandboxed_query_still_reads_its_rows_and_raises_its_errors(conn, connect):
    reader = connect("monitoring_reader")
    conn.execute("INSERT INTO monitoring_events (event_type) SELECT 'probe' FROM generate_series(1, 3)")
    rows = reader.execute("""SELECT group_key, observed, condition, message FROM _monitoring_rule_query_rows(
        'SELECT jsonb_build_object(''n'', i) AS group_key, i AS value, ''m'' || i AS message
         FROM generate_series(1, (SELECT count(*)::int FROM monitoring_events)) AS i', now()) ORDER BY 2""").fetchall()
    assert rows == [({"n": i}, float(i), True, f"m{i}") for i in (1, 2, 3)]
    assert reader.execute("SELECT count(*) FROM _monitoring_rule_query_rows('SELECT 1 WHERE false', now())").fetchone() == (0,)
    with pytest.raises(psycopg.errors.DivisionByZero):
        reader.execute("SELECT * FROM _monitoring_rule_query_rows('SELECT 1 / 0 AS value', now())")
    # the sandbox leaves the caller's transaction writable
    admin = connect("monitoring_admin")
    with admin.transaction():
        admin.execute("SELECT * FROM _monitoring_rule_query_rows('SELECT 1 AS value', now())")
        admin.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('after', 'info', 't')")


# Every object pgalert makes: a login holding any documented role must own none, nor be a member of its owner.
PGALERT_OBJECTS = """
    SELECT 'function ' || p.oid::regprocedure::text, p.proowner FROM pg_proc AS p
    WHERE p.pronamespace = 'public'::regnamespace AND p.proname ~ '^_?monitoring_'
    UNION ALL SELECT c.relkind::text || ' ' || c.oid::regclass::text, c.relowner FROM pg_class AS c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relname ~ '^_?monitoring_'
    UNION ALL SELECT 'type ' || t.oid::regtype::text, t.typowner FROM pg_type AS t
    WHERE t.typnamespace = 'public'::regnamespace AND t.typname ~ '^_?monitoring_'"""


@pytest.mark.parametrize("role", ["writer", "reader", "dispatcher", "admin", "inbound", "console"])
def test_no_documented_role_owns_or_can_alter_a_pgalert_object(conn, role):
    owned = conn.execute(f"SELECT o.name FROM ({PGALERT_OBJECTS}) AS o(name, owner) "
                         "WHERE pg_has_role(%s, o.owner, 'MEMBER')", (f"monitoring_{role}",)).fetchall()
    assert owned == []
    assert conn.execute(f"SELECT count(*) FROM ({PGALERT_OBJECTS}) AS o").fetchone()[0] > 300


# --- admins manage every rule ----------------------------------------------------------------------------

RULES = {
    "count": "INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, threshold, severity) "
             "VALUES ('r_count', 'count', 'login_failure', 5, 'warning')",
    "aggregate": "INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, aggregate, threshold, severity) "
                 "VALUES ('r_aggregate', 'aggregate', 'latency', 'p95', 900, 'P1')",
    "spike": "INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, threshold, severity) "
             "VALUES ('r_spike', 'spike', 'signup', 300, 'info')",
    "absence": "INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, threshold, severity) "
               "VALUES ('r_absence', 'absence', 'heartbeat', 1, 'critical')",
    "sql": "INSERT INTO monitoring_alert_rules (rule_name, rule_type, query, severity) "
           "VALUES ('r_sql', 'sql', 'SELECT 1 AS value FROM monitoring_events WHERE false', 'info')",
}


@pytest.mark.parametrize("rule_type", sorted(RULES))
def test_an_admin_adds_changes_disables_and_deletes_every_rule_type(connect, rule_type):
    admin = connect("monitoring_admin")
    admin.execute(RULES[rule_type])
    name = f"r_{rule_type}"
    admin.execute("UPDATE monitoring_alert_rules SET description = 'tuned', clear_after = '10 minutes' WHERE rule_name = %s", (name,))
    if rule_type != "sql":
        admin.execute("UPDATE monitoring_alert_rules SET threshold = threshold + 1, window_size = '10 minutes' WHERE rule_name = %s", (name,))
    evaluated = "SELECT count(*) FROM monitoring_evaluate_alert_rules(p_force => true) WHERE rule_name = %s"
    assert admin.execute(evaluated, (name,)).fetchone()[0] >= 1
    # over an hour without events only the absence rule would have fired (its heartbeat never came)
    would_fire = admin.execute("SELECT count(*) FROM monitoring_backtest_rule(%s, now() - interval '1 hour', now())",
                               (name,)).fetchone()[0]
    assert (would_fire > 0) == (rule_type == "absence")
    admin.execute("UPDATE monitoring_alert_rules SET enabled = FALSE WHERE rule_name = %s", (name,))
    assert admin.execute(evaluated, (name,)).fetchone() == (0,)  # disabled: not evaluated, even when forced
    admin.execute("DELETE FROM monitoring_alert_rules WHERE rule_name = %s", (name,))
    assert admin.execute("SELECT count(*) FROM monitoring_alert_rules WHERE rule_name = %s", (name,)).fetchone() == (0,)


def test_an_admin_disables_a_noisy_seed_rule_during_an_incident(connect):
    admin = connect("monitoring_admin")
    admin.execute("UPDATE monitoring_alert_rules SET enabled = FALSE WHERE rule_name = 'payment_failure_critical'")
    assert admin.execute("SELECT enabled FROM monitoring_alert_rules WHERE rule_name = 'payment_failure_critical'").fetchone() == (False,)


def test_an_admin_still_gets_the_rule_errors_a_superuser_gets(connect):
    admin = connect("monitoring_admin")
    with pytest.raises(psycopg.errors.CheckViolation, match="needs a threshold"):
        admin.execute("INSERT INTO monitoring_alert_rules (rule_name, rule_type, event_type, severity) VALUES ('x', 'count', 'e', 'info')")
    with pytest.raises(psycopg.Error, match="does not run as monitoring_rule_runner"):
        admin.execute("INSERT INTO monitoring_alert_rules (rule_name, rule_type, query, severity) "
                      "VALUES ('x', 'sql', 'SELECT rolname FROM pg_authid', 'info')")


# --- a writer does not control the alert's clock ---------------------------------------------------------

@pytest.mark.parametrize("call", [
    "SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down', p_at => now() + interval '10 years')",
    "SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down', p_at => now() - interval '1 day')",
    "INSERT INTO monitoring_alerts (alert_type, severity, title, created_at) VALUES ('db_down', 'critical', 't', now() + interval '10 years')",
    "INSERT INTO monitoring_alerts (alert_type, severity, title, created_at) VALUES ('db_down', 'critical', 't', now() - interval '3 hours')",
])
def test_a_writer_cannot_set_the_alert_clock(connect, call):
    writer = connect("monitoring_writer")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="writers|horizon|future"):
        writer.execute(call)
    assert connect().execute("SELECT count(*) FROM monitoring_alerts").fetchone() == (0,)


def test_a_writer_reports_when_the_problem_started_within_the_horizon(connect):
    writer = connect("monitoring_writer")
    writer.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down', p_occurred_at => now() - interval '2 hours')")
    writer.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, created_at) VALUES ('x', 'info', 't', now())")
    occurred, created = connect().execute("SELECT occurred_at, created_at FROM monitoring_alerts ORDER BY id LIMIT 1").fetchone()
    assert created - occurred > dt.timedelta(hours=1)


@pytest.mark.parametrize("call", [
    "INSERT INTO monitoring_alerts (alert_type, severity, title, occurred_at) VALUES ('db_down', 'critical', 't', %(claimed)s)",
    "SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down', p_occurred_at => %(claimed)s)",
    "SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down', p_occurred_at => %(claimed)s, p_at => now())",
])
@pytest.mark.parametrize("days_back", [7.01, 30, 365 * 56])
def test_a_start_beyond_the_horizon_is_clamped_never_refused(connect, call, days_back):
    """An alert is never lost for being old (#36, 6): Alertmanager re-sends startsAt of a problem firing for weeks."""
    writer = connect("monitoring_writer")
    claimed = writer.execute("SELECT now() - make_interval(secs => %s)", (days_back * 86400,)).fetchone()[0]
    writer.execute(call, {"claimed": claimed})
    occurred, created, reported = connect().execute(
        "SELECT occurred_at, created_at, reported_occurred_at FROM monitoring_alerts").fetchone()
    assert created - occurred == dt.timedelta(days=7) and reported == claimed
    # within the horizon nothing is clamped and nothing is kept beside it
    writer.execute("SELECT monitoring_raise_alert('x', 'info', 't', p_occurred_at => now() - interval '6 days')")
    assert connect().execute("SELECT created_at - occurred_at, reported_occurred_at FROM monitoring_alerts "
                             "WHERE alert_type = 'x'").fetchone() == (dt.timedelta(days=6), None)


def test_an_admin_may_backfill_with_any_past_time(connect):
    admin = connect("monitoring_admin")
    admin.execute("SELECT monitoring_raise_alert('db_down', 'critical', 'Primary down', "
                  "p_occurred_at => '2026-01-01 09:55Z', p_at => '2026-01-01 10:00Z')")
    assert admin.execute("SELECT created_at::text FROM monitoring_alerts").fetchone() == ("2026-01-01 10:00:00+00",)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="future"):
        admin.execute("SELECT monitoring_raise_alert('db_down2', 'critical', 'x', p_at => now() + interval '10 years')")


# --- admins cannot bypass the lifecycle ------------------------------------------------------------------

@pytest.mark.parametrize("update", [
    "UPDATE monitoring_alerts SET status = 'resolved', resolved_at = now()",
    "UPDATE monitoring_alerts SET status = 'acknowledged', acknowledged_at = now()",
])
def test_a_plain_status_update_is_refused_with_the_function_to_use(connect, update):
    connect().execute(SEED_CRITICAL)
    admin = connect("monitoring_admin")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="monitoring_(resolve|acknowledge)_alert"):
        admin.execute(update)
    admin.execute("UPDATE monitoring_alerts SET message = 'more context'")  # other columns stay editable
    assert admin.execute("SELECT status FROM monitoring_resolve_alert(1, 'alice')").fetchone() == ("resolved",)


# --- bad input never stops a page; every size is bounded -----------------------------------------------

@pytest.mark.parametrize(("details", "stored"), [
    ("'[1, 2]'", {"value": [1, 2]}),
    ("'42'", {"value": 42}),
    ("'\"disk full\"'", {"value": "disk full"}),
    ("'null'", {}),
    ("NULL", {}),
    ("'{\"host\": \"db-1\"}'", {"host": "db-1"}),
])
def test_details_of_any_json_kind_are_stored_as_an_object(connect, details, stored):
    writer = connect("monitoring_writer")
    writer.execute(f"INSERT INTO monitoring_alerts (alert_type, severity, title, details) VALUES ('x', 'critical', 't', {details})")
    assert connect().execute("SELECT details FROM monitoring_alerts").fetchone()[0] == stored


@pytest.mark.parametrize(("column", "value", "message"), [
    ("title", "repeat('t', 1025)", "title is 1025 characters long, over the limit of 1024"),
    ("message", "repeat('m', 20001)", "message is 20001 characters long"),
    ("details", "jsonb_build_object('log', repeat('x', 70000))", r"details is 700\d\d bytes of JSON long, over the limit of 65536"),
    ("source", "repeat('s', 501)", "source is 501 characters long"),
    ("alert_type", "repeat('a', 201)", "alert_type is 201 characters long"),
])
def test_oversized_alerts_get_a_clear_error_and_nothing_is_written(connect, column, value, message):
    row = {"alert_type": "'x'", "severity": "'critical'", "title": "'t'", column: value}
    writer = connect("monitoring_writer")
    with pytest.raises(psycopg.errors.StringDataRightTruncation, match=message):
        writer.execute(f"INSERT INTO monitoring_alerts ({', '.join(row)}) SELECT {', '.join(row.values())}")
    assert connect().execute("SELECT count(*) FROM monitoring_alerts").fetchone() == (0,)


def test_repeats_never_grow_details_past_the_limit(connect):
    writer = connect("monitoring_writer")
    for i in range(40):  # each repeat brings 2 KB of new keys; merged they would reach 80 KB
        writer.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, details) "
                       "SELECT 'noisy', 'warning', 't', jsonb_object_agg('k' || %s || '_' || g, repeat('v', 200)) "
                       "FROM generate_series(1, 10) AS g", (i,))
    count, size = connect().execute("SELECT occurrence_count, octet_length(details::text) FROM monitoring_alerts").fetchone()
    assert count == 40 and size <= 65536


@pytest.mark.parametrize("value", ["'NaN'", "'Infinity'", "'-Infinity'"])
def test_events_with_a_value_that_is_not_a_finite_number_are_refused(connect, value):
    writer = connect("monitoring_writer")
    with pytest.raises(psycopg.errors.CheckViolation, match="value_is_a_finite_number"):
        writer.execute(f"INSERT INTO monitoring_events (event_type, value) VALUES ('api_response_time', {value})")
    writer.execute("INSERT INTO monitoring_events (event_type, value) VALUES ('api_response_time', 2350)")
    assert connect().execute("SELECT count(*) FROM monitoring_events").fetchone() == (1,)


def test_oversized_event_labels_are_refused(connect):
    with pytest.raises(psycopg.errors.CheckViolation, match="labels_fit_in_8_kib"):
        connect("monitoring_writer").execute(
            "INSERT INTO monitoring_events (event_type, labels) VALUES ('e', jsonb_build_object('x', repeat('y', 9000)))")


def test_a_huge_row_stored_before_the_limits_reaches_a_dispatcher_cut_to_size(conn):
    conn.execute(SEED_CRITICAL)
    # as a 0.1.0 database may hold it: the limits did not exist when it was written
    conn.execute("ALTER TABLE monitoring_alerts DROP CONSTRAINT details_are_an_object_of_at_most_64_kib, "
                 "DROP CONSTRAINT message_fits_in_20000_characters")
    conn.execute("UPDATE monitoring_alerts SET details = jsonb_build_object('log', repeat('x', 5000000)), "
                 "message = repeat('m', 3000000)")
    alerts = [row[0] for row in conn.execute("SELECT alert FROM monitoring_claim_deliveries('d1')").fetchall()]
    assert len(alerts) == 3
    for alert in alerts:
        assert alert["details"] == {"pgalert_truncated": "details over 64 KiB were left out"}
        assert len(alert["message"]) == 20000 and alert["title"] == "Test"
