"""Migrations: ordered, immutable, idempotent, safe to race, and equal to sql/schema.sql."""

from __future__ import annotations

import re
import shutil
import threading
import time
import uuid

import psycopg
import pytest

from devtools.schema import SCHEMA_FILE, dump
from dispatcher.migrate import MIGRATIONS_DIR, MigrationError, discover, migrate
from tests.conftest import SERVER


@pytest.fixture
def empty_db():
    name = f"pgalert_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER.url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield SERVER.url(name)
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_second_run_is_a_no_op(empty_db):
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert migrate(conn, log=lambda *_: None) == [m.version for m in discover()]
        assert migrate(conn, log=lambda *_: None) == []
        rows = conn.execute("SELECT version, checksum FROM _monitoring_migrations ORDER BY version").fetchall()
    assert [(v, c) for v, c in rows] == [(m.version, m.checksum) for m in discover()]


def test_racing_migrations_apply_each_file_once(empty_db):
    outcomes: list[object] = []
    barrier = threading.Barrier(4)

    def run():
        with psycopg.connect(empty_db, autocommit=True) as conn:
            barrier.wait()
            try:
                outcomes.append(migrate(conn, log=lambda *_: None))
            except Exception as error:  # noqa: BLE001 - asserted below
                outcomes.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes, key=len) == [[], [], [], [m.version for m in discover()]]


def test_an_edited_applied_migration_is_refused(empty_db, tmp_path):
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy)
    with psycopg.connect(empty_db, autocommit=True) as conn:
        migrate(conn, copy, log=lambda *_: None)
        first = sorted(copy.glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- a harmless-looking edit\n")
        with pytest.raises(MigrationError, match=f"{first.name} was changed after it was applied"):
            migrate(conn, copy, log=lambda *_: None)


def test_a_failing_migration_leaves_nothing_behind(empty_db, tmp_path):
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy)
    (copy / "9999_broken.sql").write_text("CREATE TABLE half_done (x int);\nSELECT 1/0;\n")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            migrate(conn, copy, log=lambda *_: None)
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        assert conn.execute("SELECT max(version) FROM _monitoring_migrations").fetchone() < ("9999",)


def test_psql_applied_files_are_adopted(empty_db):
    with psycopg.connect(empty_db, autocommit=True) as conn:
        for migration in discover():  # what `psql -1 -f` does: the file alone, in one transaction
            with conn.transaction():
                conn.execute(migration.sql)
        assert conn.execute("SELECT count(*) FROM _monitoring_migrations WHERE checksum IS NULL").fetchone() == (len(discover()),)
        assert migrate(conn, log=lambda *_: None) == []
        assert conn.execute("SELECT count(*) FROM _monitoring_migrations WHERE checksum IS NULL").fetchone() == (0,)


def test_every_migration_records_itself():
    for migration in discover():
        assert re.search(
            rf"INSERT INTO _monitoring_migrations \(version, name\) VALUES \('{migration.version}', '{migration.name}'\);\s*$",
            migration.sql,
        ), migration.path.name


def test_schema_file_equals_what_the_migrations_produce(empty_db):
    with psycopg.connect(empty_db, autocommit=True) as conn:
        migrate(conn, log=lambda *_: None)
    assert dump(empty_db) == SCHEMA_FILE.read_text(), "run `make schema` and commit sql/schema.sql"


def test_every_public_object_is_documented(conn):
    missing = conn.execute("""
        SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'monitoring\\_%'
          AND obj_description(p.oid, 'pg_proc') IS NULL
        UNION ALL
        SELECT 'relation ' || c.relname FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'v', 'p') AND NOT c.relispartition
          AND c.relname LIKE 'monitoring\\_%' AND obj_description(c.oid, 'pg_class') IS NULL
    """).fetchall()
    assert missing == []


def test_without_pg_cron_jobs_are_listed_and_a_notice_says_so(conn):
    notices = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
    assert conn.execute("SELECT monitoring_install_schedules()").fetchone() == (0,)
    assert any("pg_cron is not installed" in n for n in notices)
    assert conn.execute("SELECT count(*) > 0 FROM monitoring_schedules").fetchone() == (True,)


@pytest.fixture
def cron_db():
    """The server's cron.database_name, emptied so its jobs can only come from the test. Emptied in place:
    dropping the database stops pg_cron's scheduler, and recreating the extension leaves it reading a stale
    job list, both until the server restarts."""
    with psycopg.connect(SERVER.url("pgalert"), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")  # it lives in schema public, so public stays
        conn.execute("SELECT cron.unschedule(jobid) FROM cron.job")
        conn.execute("""
            DO $$
            DECLARE v_drop text;
            BEGIN
                -- every name is rendered before the first drop: a CASCADE may take later ones with it
                FOREACH v_drop IN ARRAY ARRAY(
                    SELECT format('DROP EXTENSION IF EXISTS %I CASCADE', extname) FROM pg_extension
                    WHERE extname NOT IN ('pg_cron', 'plpgsql')
                    UNION ALL
                    SELECT format('DROP %s IF EXISTS %s CASCADE', CASE relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, oid::regclass)
                    FROM pg_class
                    WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v') AND NOT relispartition
                      AND NOT EXISTS (SELECT FROM pg_depend WHERE objid = pg_class.oid AND deptype = 'e')
                ) LOOP
                    EXECUTE v_drop;
                END LOOP;
                FOREACH v_drop IN ARRAY ARRAY(
                    SELECT format('DROP ROUTINE IF EXISTS %s CASCADE', oid::regprocedure) FROM pg_proc
                    WHERE pronamespace = 'public'::regnamespace
                      AND NOT EXISTS (SELECT FROM pg_depend WHERE objid = pg_proc.oid AND deptype = 'e')
                ) LOOP
                    EXECUTE v_drop;
                END LOOP;
            END
            $$""")
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchone() == (0,)
    return SERVER.url("pgalert")


def test_with_pg_cron_the_migrations_schedule_their_jobs(cron_db):
    with psycopg.connect(cron_db, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM cron.job").fetchone() == (0,)
        migrate(conn, log=lambda *_: None)
        jobs = dict(conn.execute("SELECT jobname, command FROM cron.job").fetchall())
        expected = dict(conn.execute("SELECT job_name, command FROM monitoring_schedules").fetchall())
        assert jobs == expected and expected
        assert conn.execute("SELECT monitoring_install_schedules()").fetchone() == (len(expected),)
        assert conn.execute("SELECT count(*) FROM cron.job").fetchone() == (len(expected),)  # replaced, not added


def test_pg_cron_runs_a_sql_rule_in_its_own_job_and_cancels_it_at_its_query_timeout(cron_db):
    """The real thing, once: pg_cron (libpq mode) starts the job at the next minute; up to 70 s."""
    with psycopg.connect(cron_db, autocommit=True) as conn:
        migrate(conn, log=lambda *_: None)
        conn.execute("""INSERT INTO monitoring_alert_rules (rule_name, rule_type, query, query_timeout, severity)
                        VALUES ('sleepy', 'sql', 'SELECT 1 AS value FROM pg_sleep(30)', '1 second', 'info')""")
        job = conn.execute("SELECT jobid FROM cron.job WHERE jobname = 'pgalert_rule_sleepy'").fetchone()
        assert job is not None
        deadline = time.monotonic() + 70
        while time.monotonic() < deadline:
            run = conn.execute("SELECT status, return_message FROM cron.job_run_details "
                               "WHERE jobid = %s AND status IN ('succeeded', 'failed')", job).fetchone()
            if run:
                break
            time.sleep(0.5)
        assert run == ("succeeded", "1 row")  # the cancel was caught and recorded, not a failed job
        error = conn.execute("SELECT last_error FROM monitoring_alert_rules WHERE rule_name = 'sleepy'").fetchone()[0]
        assert error == "query canceled after running longer than its query_timeout (00:00:01)"
        conn.execute("DELETE FROM monitoring_alert_rules WHERE rule_name = 'sleepy'")
        assert conn.execute("SELECT count(*) FROM cron.job WHERE jobname = 'pgalert_rule_sleepy'").fetchone() == (0,)
