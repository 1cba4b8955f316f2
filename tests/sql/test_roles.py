"""Each role can do its job and nothing more: the public functions called as each role."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.helpers import SEED_CRITICAL


def test_writer_runs_the_seed_statement_and_raise_alert(connect):
    writer = connect("monitoring_writer")
    writer.execute(SEED_CRITICAL)
    assert writer.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('b', 'info', 't') RETURNING id").fetchone() == (2,)
    assert writer.execute("SELECT monitoring_raise_alert('payment_failure', 'critical', 'again')").fetchone() == (1,)
    assert connect().execute("SELECT count(*) FROM monitoring_deliveries").fetchone() == (4,)


@pytest.mark.parametrize("statement", [
    "SELECT message FROM monitoring_alerts",
    "UPDATE monitoring_alerts SET status = 'resolved'",
    "DELETE FROM monitoring_deliveries",
    "SELECT monitoring_acknowledge_alert(1)",
    "SELECT * FROM monitoring_claim_deliveries('x')",
    "INSERT INTO monitoring_routes (severity, provider) VALUES ('info', 'webhook')",
])
def test_writer_can_do_nothing_else(connect, statement):
    connect().execute(SEED_CRITICAL)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        connect("monitoring_writer").execute(statement)


@pytest.mark.parametrize("statement", [
    SEED_CRITICAL,
    "SELECT monitoring_resolve_alert(1)",
    "UPDATE monitoring_routes SET enabled = false",
    "SELECT * FROM monitoring_claim_deliveries('x')",
])
def test_reader_reads_and_changes_nothing(connect, statement):
    connect().execute(SEED_CRITICAL)
    reader = connect("monitoring_reader")
    assert reader.execute("SELECT count(*) FROM monitoring_alerts JOIN monitoring_deliveries ON alert_id = monitoring_alerts.id").fetchone() == (3,)
    assert len(reader.execute("SELECT * FROM monitoring_delivery_queue").fetchall()) == 3
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute(statement)


def test_dispatcher_claims_completes_and_paces(connect):
    connect().execute(SEED_CRITICAL)
    dispatcher = connect("monitoring_dispatcher")
    rows = dispatcher.execute("SELECT delivery_id, attempt FROM monitoring_claim_deliveries('d')").fetchall()
    results = [{"delivery_id": d, "attempt": a, "outcome": "failed" if d == 1 else "succeeded",
                "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z"} for d, a in rows]
    # the failed pagerduty page raises pgalert_delivery_failure, which the dispatcher's grants must allow
    assert dispatcher.execute("SELECT monitoring_complete_deliveries('d', %s)", (Jsonb(results),)).fetchone() == (3,)
    assert dispatcher.execute("SELECT granted FROM monitoring_reserve_send_slots('slack', 1, '1 second', 1)").fetchone() == (1,)
    assert dispatcher.execute("SELECT monitoring_next_delivery_due() IS NOT NULL").fetchone() == (True,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        dispatcher.execute("SELECT monitoring_resolve_alert(1)")


def test_admin_acknowledges_resolves_and_edits_routes(connect):
    connect().execute(SEED_CRITICAL)
    admin = connect("monitoring_admin")
    assert admin.execute("SELECT status FROM monitoring_acknowledge_alert(1, 'alice')").fetchone() == ("acknowledged",)
    assert admin.execute("SELECT status FROM monitoring_resolve_alert(1, 'alice')").fetchone() == ("resolved",)
    admin.execute("INSERT INTO monitoring_routes (alert_type, severity, provider) VALUES ('deploy', 'info', 'webhook')")
    admin.execute(SEED_CRITICAL)


def test_security_definer_functions_pin_search_path(conn):
    rows = conn.execute("""
        SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.prosecdef
          AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
    """).fetchall()
    assert rows == []
    assert conn.execute("SELECT count(*) FROM pg_proc WHERE prosecdef AND pronamespace = 'public'::regnamespace").fetchone()[0] >= 3


def test_no_public_execute_on_any_function(conn):
    rows = conn.execute("""
        SELECT p.proname FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE')
          AND NOT EXISTS (SELECT FROM pg_depend WHERE objid = p.oid AND deptype = 'e')  -- btree_gist's own
    """).fetchall()
    assert rows == []


# What each role may do, written down once: every public table and function of the schema, compared with the
# catalog, so a GRANT that widens (or narrows) a role cannot slip in unnoticed. The behaviour behind these
# rights is tested above and in test_hardening.py by logins that hold one role each.
ADMIN_EDITS = "admin:DELETE admin:INSERT admin:SELECT admin:UPDATE"
TABLE_RIGHTS = {
    "monitoring_alert_escalations": "admin:SELECT reader:SELECT",
    "monitoring_alert_rules": f"{ADMIN_EDITS} reader:SELECT",
    "monitoring_api_clients": "admin:SELECT",  # id, name and dates: never the token hashes (below)
    "monitoring_console_users": "admin:SELECT",  # never the password hashes (below)
    "monitoring_inbound_actions": "admin:DELETE admin:SELECT reader:SELECT",
    "monitoring_silences": "admin:INSERT admin:SELECT reader:SELECT",  # ended by expiring, never deleted
    "monitoring_maintenance_windows": f"{ADMIN_EDITS} reader:SELECT",
    "monitoring_inhibit_rules": f"{ADMIN_EDITS} reader:SELECT",
    "monitoring_notification_holds": "admin:SELECT reader:SELECT",
    "monitoring_inhibit_sources": "admin:SELECT reader:SELECT",  # derived, kept by pgalert
    "monitoring_regex_prefilters": "admin:SELECT reader:SELECT",  # derived, kept by pgalert
    "monitoring_group_rules": f"{ADMIN_EDITS} dispatcher:SELECT reader:SELECT",
    "monitoring_alert_groups": "admin:SELECT dispatcher:SELECT reader:SELECT",
    "monitoring_alert_group_members": "admin:SELECT dispatcher:SELECT reader:SELECT",
    "monitoring_flap_rules": f"{ADMIN_EDITS} reader:SELECT",
    "monitoring_flap_changes": "admin:SELECT reader:SELECT",
    "monitoring_flapping": "admin:SELECT dispatcher:SELECT reader:SELECT",
    "monitoring_alerts": f"{ADMIN_EDITS} dispatcher:INSERT dispatcher:SELECT reader:SELECT writer:INSERT writer:SELECT",
    "monitoring_deliveries": "admin:INSERT admin:SELECT admin:UPDATE dispatcher:INSERT dispatcher:SELECT dispatcher:UPDATE reader:SELECT",
    "monitoring_delivery_attempts": "admin:SELECT dispatcher:INSERT dispatcher:SELECT reader:SELECT",
    "monitoring_delivery_queue": "admin:SELECT dispatcher:SELECT reader:SELECT",
    "monitoring_escalation_assignments": f"{ADMIN_EDITS} reader:SELECT",
    "monitoring_escalation_policies": f"{ADMIN_EDITS} reader:SELECT",
    "monitoring_escalation_steps": f"{ADMIN_EDITS} reader:SELECT",
    "monitoring_events": "admin:INSERT admin:SELECT dispatcher:INSERT reader:SELECT writer:INSERT",
    "monitoring_health_checks": f"{ADMIN_EDITS} dispatcher:SELECT dispatcher:UPDATE reader:SELECT",
    "monitoring_oncall_overrides": f"{ADMIN_EDITS} reader:SELECT",
    "monitoring_oncall_participants": f"{ADMIN_EDITS} reader:SELECT",
    "monitoring_oncall_schedules": f"{ADMIN_EDITS} reader:SELECT",
    # readers read every column but email and phone, the dispatcher's claim reads those too (below)
    "monitoring_people": f"{ADMIN_EDITS} dispatcher:SELECT reader:SELECT",
    # INSERT and UPDATE of some columns only: never verified_at, never a verified address (test_paging.py); readers
    # read every column but the address, the dispatcher's claim reads it too (below)
    "monitoring_contact_methods": f"{ADMIN_EDITS} dispatcher:SELECT reader:SELECT",
    "monitoring_contact_verifications": "dispatcher:SELECT",  # the claim reads a code waiting, to send it
    "monitoring_contacts": "admin:SELECT reader:SELECT",
    "monitoring_notification_rules": f"{ADMIN_EDITS} reader:SELECT",
    "monitoring_message_statuses": "admin:SELECT dispatcher:DELETE dispatcher:INSERT dispatcher:SELECT "
                                   "dispatcher:UPDATE reader:SELECT",
    "monitoring_person_pages": "admin:SELECT reader:SELECT",
    "monitoring_providers": f"{ADMIN_EDITS} dispatcher:SELECT reader:SELECT",
    "monitoring_routes": f"{ADMIN_EDITS} dispatcher:SELECT reader:SELECT",
    "monitoring_schedules": f"{ADMIN_EDITS} reader:SELECT",
    "monitoring_scheduler_heartbeat": "admin:SELECT reader:SELECT",
    "monitoring_scheduler_ticks": "admin:SELECT reader:SELECT",
    "monitoring_settings": f"{ADMIN_EDITS} dispatcher:SELECT reader:SELECT",
    "monitoring_sla_metrics": "admin:SELECT dispatcher:SELECT reader:SELECT",
    "monitoring_sla_targets": f"{ADMIN_EDITS} dispatcher:SELECT reader:SELECT",
}
READ = ["reader", "admin"]
FUNCTION_RIGHTS = {
    "monitoring_acknowledge_alert": ["admin"], "monitoring_resolve_alert": ["admin"],
    "monitoring_add_override": ["admin"], "monitoring_backtest_rule": READ,
    "monitoring_add_contact_method": ["admin"], "monitoring_send_verification_code": ["admin"],
    "monitoring_verify_contact_method": ["admin"], "monitoring_test_page": ["admin"],
    "monitoring_contact_method_verified": ["admin"], "monitoring_mask_contact_address": ["reader", "dispatcher", "admin"],
    "monitoring_console_contacts": None,
    "monitoring_rebuild_inhibit_sources": ["admin"],
    "monitoring_rebuild_rule_gates": ["admin"],
    "monitoring_claim_deliveries": ["dispatcher"], "monitoring_complete_deliveries": ["dispatcher"],
    "monitoring_release_deliveries": ["dispatcher"], "monitoring_reserve_send_slots": ["dispatcher"],
    "monitoring_pause_provider": ["dispatcher"], "monitoring_next_delivery_due": ["dispatcher"],
    "monitoring_claim_health_checks": ["dispatcher"], "monitoring_record_health_check": ["dispatcher"],
    "monitoring_ensure_health_check": ["dispatcher"],
    # pg_cron (a superuser's job) stamps the heartbeat; dispatchers judge it and page when it stops
    "monitoring_scheduler_heartbeat": None, "monitoring_check_scheduler": ["dispatcher"],
    "monitoring_scheduler_status": ["reader", "dispatcher", "admin"], "monitoring_refresh_scheduler": ["admin"],
    # where pg_cron cannot run the jobs, the dispatchers do (as the owner, through monitoring_run_scheduled_job)
    "monitoring_scheduler_diagnosis": ["reader", "dispatcher", "admin"],
    "monitoring_scheduler_mode": ["reader", "dispatcher", "admin"], "monitoring_scheduler_summary": ["reader", "admin"],
    "monitoring_due_scheduled_jobs": ["reader", "dispatcher", "admin"], "monitoring_run_scheduled_job": ["dispatcher"], "monitoring_compact_rule_counts": ["admin"],
    "monitoring_evaluate_alert_rules": ["admin"], "monitoring_evaluate_sql_rule": ["admin"],
    "monitoring_get_sla_breakdown": READ, "monitoring_get_sla_summary": READ, "monitoring_sla_target": READ,
    "monitoring_install_schedules": ["admin"], "monitoring_maintain_event_partitions": ["admin"],
    "monitoring_purge_history": ["admin"], "monitoring_run_oncall": ["admin"],
    "monitoring_oncall_timeline": READ, "monitoring_who_is_on_call": ["reader", "dispatcher", "admin"],
    "monitoring_raise_alert": ["writer", "admin"], "monitoring_route_providers": ["reader", "admin"],
    "monitoring_create_api_client": ["admin"], "monitoring_revoke_api_client": ["admin"],
    "monitoring_create_silence": ["admin"], "monitoring_expire_silence": ["admin"], "monitoring_release_holds": ["admin"],
    "monitoring_flush_groups": ["admin"], "monitoring_settle_flapping": ["admin"],
    # pgalert serve's whole interface: it holds no table rights at all
    "monitoring_inbound_client": ["inbound"], "monitoring_inbound_find_alert": ["inbound"],
    "monitoring_inbound_act": ["inbound"], "monitoring_inbound_raise": ["inbound"], "monitoring_inbound_ready": ["inbound"],
    "monitoring_inbound_contact_act": ["inbound"], "monitoring_inbound_contact_status": ["inbound"],
    "monitoring_messages_to_poll": ["dispatcher"], "monitoring_message_polled": ["dispatcher"],
    "monitoring_inbound_contact_opt_out": ["inbound"],
    "monitoring_silence_preview": READ, "monitoring_channel_health": READ,
    "monitoring_console_save_user": ["admin"], "monitoring_console_disable_user": ["admin"],
    # the console's own interface (monitoring_console, below): no other role runs it
    **{f"monitoring_console_{name}": None for name in (
        "begin_sign_in", "finish_sign_in", "session", "proxy_session", "sign_out", "acknowledge", "resolve", "reopen",
        "create_silence", "expire_silence", "add_override", "set_rule_enabled", "extend_silence", "save_window",
        "set_window_enabled", "save_user_as_admin", "disable_user_as_admin", "set_channel", "test_page")},
}
# the console reads what a reader reads, sees who may sign in (never a password hash), and acts only through
# these functions, each given a person's session token (tests/sql/test_console.py)
CONSOLE_FUNCTIONS = {name for name, roles in FUNCTION_RIGHTS.items()
                     if name.startswith("monitoring_console_") and roles is None}
ROLES = ["writer", "reader", "dispatcher", "admin", "inbound"]


def test_every_public_table_grants_exactly_the_documented_rights(conn):
    rows = conn.execute("""
        SELECT c.relname, string_agg(r.role || ':' || pr.p, ' ' ORDER BY r.role, pr.p)
        FROM pg_class AS c
        CROSS JOIN unnest(%s::text[]) AS r (role)
        CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS pr (p)
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'p') AND NOT c.relispartition
          AND c.relname LIKE 'monitoring\\_%%'
          AND (has_table_privilege('monitoring_' || r.role, c.oid, pr.p)
               OR (pr.p IN ('SELECT', 'INSERT', 'UPDATE') AND has_any_column_privilege('monitoring_' || r.role, c.oid, pr.p)))
        GROUP BY c.relname
    """, (ROLES,)).fetchall()
    assert dict(rows) == TABLE_RIGHTS
    # a writer inserts the seed's columns and occurred_at, reads back only ids, and never a lifecycle column
    writable = conn.execute("""SELECT array_agg(attname ORDER BY attnum) FROM pg_attribute
                               WHERE attrelid = 'monitoring_alerts'::regclass AND attnum > 0
                                 AND has_column_privilege('monitoring_writer', attrelid, attname, 'INSERT')""").fetchone()[0]
    assert writable == ["alert_type", "severity", "title", "message", "source", "dedup_key", "details", "occurred_at", "created_at"]
    readable = conn.execute("""SELECT array_agg(attname) FROM pg_attribute
                               WHERE attrelid = 'monitoring_alerts'::regclass AND attnum > 0
                                 AND has_column_privilege('monitoring_writer', attrelid, attname, 'SELECT')""").fetchone()[0]
    assert readable == ["id"]
    token_readers = conn.execute("""SELECT array_agg(r) FROM unnest(%s::text[]) AS r
                                    WHERE has_column_privilege('monitoring_' || r, 'monitoring_api_clients', 'token_sha256', 'SELECT')""",
                                 (ROLES,)).fetchone()[0]
    assert token_readers is None
    hash_readers = conn.execute("""SELECT array_agg(r) FROM unnest(%s::text[]) AS r
                                   WHERE has_column_privilege('monitoring_' || r, 'monitoring_console_users',
                                                              'password_hash', 'SELECT')""",
                                (ROLES + ["console"],)).fetchone()[0]
    assert hash_readers is None
    # a contact address, a person's email and phone, and a code waiting: the admins and the sending dispatcher only
    # (#35 items 2 and 8)
    secret_readers = conn.execute("""SELECT array_agg(r || ':' || c ORDER BY r, c)
                                     FROM unnest(%s::text[]) AS r, (VALUES ('monitoring_contact_methods', 'address'),
                                          ('monitoring_people', 'email'), ('monitoring_people', 'phone'),
                                          ('monitoring_contact_verifications', 'code')) AS s (t, c)
                                     WHERE has_column_privilege('monitoring_' || r, s.t, s.c, 'SELECT')""",
                                  (ROLES + ["console"],)).fetchone()[0]
    assert secret_readers == ["admin:address", "admin:email", "admin:phone", "dispatcher:address", "dispatcher:code",
                              "dispatcher:email", "dispatcher:phone"]


def test_every_public_function_runs_for_exactly_the_documented_roles(conn):
    rows = conn.execute("""
        SELECT p.proname, array_agg(r.role ORDER BY r.n) FILTER (WHERE has_function_privilege('monitoring_' || r.role, p.oid, 'EXECUTE'))
        FROM pg_proc AS p CROSS JOIN unnest(%s::text[]) WITH ORDINALITY AS r (role, n)
        WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'monitoring\\_%%'
        GROUP BY p.proname
    """, (ROLES,)).fetchall()
    assert dict(rows) == FUNCTION_RIGHTS


def test_the_console_reads_what_a_reader_reads_and_acts_only_through_its_functions(conn):
    tables = conn.execute("""
        SELECT c.relname, pr.p, has_table_privilege('monitoring_console', c.oid, pr.p),
               has_table_privilege('monitoring_reader', c.oid, pr.p)
        FROM pg_class AS c CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS pr (p)
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'p') AND NOT c.relispartition
    """).fetchall()
    assert [(t, p) for t, p, console, reader in tables if console != reader] == []
    assert conn.execute("SELECT has_any_column_privilege('monitoring_console', 'monitoring_console_users', 'SELECT')"
                        ).fetchone()[0]
    functions = conn.execute("""
        SELECT p.proname FROM pg_proc AS p
        WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'monitoring\\_%%'
          AND has_function_privilege('monitoring_console', p.oid, 'EXECUTE')
          AND NOT has_function_privilege('monitoring_reader', p.oid, 'EXECUTE')
    """).fetchall()
    assert {name for (name,) in functions} == CONSOLE_FUNCTIONS
