"""Each role can do its job and nothing more: the public functions called as each role."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.conftest import SEED_CRITICAL


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
