"""Migrations and definitions: ordered, immutable, idempotent, safe to race, one transaction, two install
paths (pgalert migrate and psql) that keep the same books, and upgrades from 0.1.0."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from devtools.install_script import INSTALL_SCRIPT, render
from devtools.localpg import PG_BIN, free_port
from dispatcher.cli import cli
from dispatcher.migrate import SQL_ROOT, MigrationError, discover_definitions, discover_migrations, migrate, statements
from tests.helpers import SERVER

# each test migrates a database of its own (roles are the cluster's) or uses the pg_cron database
pytestmark = pytest.mark.cluster_roles

SQL_DIR = Path(str(SQL_ROOT))
LEGACY = Path(__file__).resolve().parent.parent / "fixtures" / "pgalert-0.1.0" / "migrations"
QUIET = {"log": lambda *_: None}


@pytest.fixture
def sql_copy(tmp_path) -> Path:
    """A copy of sql/ to edit, as a developer or a careless hand would."""
    copy = tmp_path / "sql"
    shutil.copytree(SQL_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def psql(url: str, *args: str, cwd: Path = SQL_DIR.parent) -> subprocess.CompletedProcess:
    return subprocess.run([str(PG_BIN / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-d", url, *args],
                          cwd=cwd, capture_output=True, text=True)


def apply_legacy(url: str) -> None:
    """A database as pgalert 0.1.0 left it: its eleven migrations, applied with psql as its README said."""
    for path in sorted(LEGACY.glob("*.sql")):
        result = psql(url, "-q", "-1", "-f", str(path))
        assert result.returncode == 0, result.stderr


def schema_dump(url: str) -> dict[str, str]:
    """pg_dump --schema-only, as {object: definition}. The ACLs of btree_gist's own functions are left out:
    0.1.0 revoked EXECUTE on every function in the schema, the extension's included, after installing it."""
    out = subprocess.run([str(PG_BIN / "pg_dump"), "--schema-only", "--no-owner", url],
                         capture_output=True, text=True, check=True).stdout
    objects = {}
    for part in re.split(r"\n--\n-- Name: ", out)[1:]:
        head, _, body = part.partition("\n--\n")
        key = re.sub(r"; Owner: .*", "", head)
        if "Type: ACL" in key and not re.match(r"(FUNCTION |TABLE |VIEW )?_?monitoring", key):
            continue
        if re.search(r"monitoring_events_\d{8}", key):
            continue  # daily partitions: made by the clock (after_migrate.sql), not by the schema
        body = re.sub(r" NOT VALID;$", ";", body)  # added to existing rows in an upgrade, validated for new ones
        objects[key] = re.sub(r"\\(un)?restrict \S+", "", body).strip()
    return objects


def test_second_run_is_a_no_op(empty_db):
    with psycopg.connect(empty_db, autocommit=True) as conn:
        first = migrate(conn, **QUIET)
        assert first.migrations == [m.name for m in discover_migrations()]
        assert first.definitions == [d.name for d in discover_definitions()]
        assert not migrate(conn, **QUIET).pending
        rows = conn.execute("SELECT version, checksum FROM _monitoring_migrations ORDER BY version").fetchall()
    assert rows == [(m.version, m.checksum) for m in discover_migrations()]


def test_check_reports_what_is_pending_and_changes_nothing(empty_db, sql_copy):
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert migrate(conn, sql_copy, check_only=True).migrations == [m.name for m in discover_migrations()]
        assert conn.execute("SELECT to_regclass('monitoring_alerts')").fetchone() == (None,)
        migrate(conn, sql_copy, **QUIET)
        (sql_copy / "routing.sql").write_text((sql_copy / "routing.sql").read_text() + "\n-- reworded\n")
        plan = migrate(conn, sql_copy, check_only=True)
        assert (plan.migrations, plan.definitions) == ([], ["routing.sql"])
        assert migrate(conn, sql_copy, **QUIET).definitions == ["routing.sql"]
        assert not migrate(conn, sql_copy, check_only=True).pending


def test_racing_migrations_apply_each_file_once(empty_db):
    outcomes: list[object] = []
    barrier = threading.Barrier(4)

    def run():
        with psycopg.connect(empty_db, autocommit=True) as conn:
            barrier.wait()
            try:
                outcomes.append(migrate(conn, **QUIET).migrations)
            except Exception as error:  # noqa: BLE001 - asserted below
                outcomes.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes, key=len) == [[], [], [], [m.name for m in discover_migrations()]]


def test_an_edited_applied_migration_is_refused(empty_db, sql_copy):
    with psycopg.connect(empty_db, autocommit=True) as conn:
        migrate(conn, sql_copy, **QUIET)
        first = sorted((sql_copy / "migrations").glob("*.sql"))[0]
        first.write_text(first.read_text() + "\n-- a harmless-looking edit\n")
        with pytest.raises(MigrationError, match=f"{first.name} was changed after it was applied"):
            migrate(conn, sql_copy, **QUIET)


def test_a_failing_run_leaves_nothing_behind(empty_db, sql_copy):
    (sql_copy / "migrations" / "9999_broken.sql").write_text("CREATE TABLE half_done (x int);\nSELECT 1/0;\n")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            migrate(conn, sql_copy, **QUIET)
        # one transaction: not the broken file, nor anything applied before it in the same run
        assert conn.execute("SELECT to_regclass('half_done'), to_regclass('monitoring_alerts')").fetchone() == (None, None)


@pytest.mark.parametrize("statement", ["COMMIT;", "commit ;", "-- done\nROLLBACK;", "BEGIN;", "END;"])
def test_a_migration_that_ends_its_transaction_is_refused_before_anything_runs(empty_db, sql_copy, statement):
    (sql_copy / "migrations" / "9999_commits.sql").write_text(f"CREATE TABLE half_done (x int);\n{statement}\n")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(MigrationError, match="9999_commits.sql contains .* must not end or nest its transaction"):
            migrate(conn, sql_copy, **QUIET)
        assert conn.execute("SELECT to_regclass('half_done'), to_regclass('_monitoring_migrations')").fetchone() == (None, None)


def test_a_definitions_file_that_commits_is_refused_too(empty_db, sql_copy):
    (sql_copy / "routing.sql").write_text((sql_copy / "routing.sql").read_text() + "\nCOMMIT;\n")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(MigrationError, match="routing.sql contains 'COMMIT'"):
            migrate(conn, sql_copy, **QUIET)
        assert conn.execute("SELECT to_regclass('_monitoring_migrations')").fetchone() == (None,)


def test_transaction_words_inside_bodies_strings_and_comments_are_not_transaction_control(empty_db, sql_copy):
    (sql_copy / "migrations" / "9999_words.sql").write_text(
        "-- COMMIT; in a comment\n"
        "DO $$ BEGIN PERFORM 1; END $$;\n"
        "SELECT 'COMMIT;' AS text, $q$ ROLLBACK; $q$ AS quoted;\n"
        "INSERT INTO _monitoring_migrations (version, name) VALUES ('9999', 'words');\n"
    )
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert migrate(conn, sql_copy, **QUIET).migrations[-1] == "9999_words.sql"


def test_a_migration_that_does_not_record_itself_is_refused(empty_db, sql_copy):
    (sql_copy / "migrations" / "9999_silent.sql").write_text("CREATE TABLE silent (x int);\n")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(MigrationError, match="9999_silent.sql does not record itself"):
            migrate(conn, sql_copy, **QUIET)
        assert conn.execute("SELECT to_regclass('silent')").fetchone() == (None,)


def test_every_migration_records_itself():
    for migration in discover_migrations():
        assert re.search(
            rf"INSERT INTO _monitoring_migrations \(version, name\) VALUES \('{migration.version}', '{migration.name[5:-4]}'\);\s*$",
            migration.text,
        ), migration.name


# --- the psql path ---------------------------------------------------------------------------------------

def test_install_script_is_current():
    assert INSTALL_SCRIPT.read_text() == render(), "run `make install-script` and commit sql/install.psql"


def test_psql_path_records_the_checksums_pgalert_migrate_checks(empty_db):
    result = psql(empty_db, "-f", "sql/install.psql")
    assert result.returncode == 0, result.stderr
    with psycopg.connect(empty_db, autocommit=True) as conn:
        rows = conn.execute("SELECT version, checksum FROM _monitoring_migrations ORDER BY version").fetchall()
        assert rows == [(m.version, m.checksum) for m in discover_migrations()]
        assert not migrate(conn, **QUIET).pending  # nothing to adopt, nothing to redo
    second = psql(empty_db, "-f", "sql/install.psql")
    assert second.returncode == 0 and "applied" not in second.stdout
    # and it ends, like `pgalert migrate`, saying how the scheduled jobs will run (#37, 2)
    assert "Scheduled jobs: pg_cron cannot run pgalert's" in second.stdout
    assert "ALTER SYSTEM SET cron.database_name" in second.stdout


def test_a_file_edited_after_psql_applied_it_is_refused_by_both_paths(empty_db, sql_copy):
    assert psql(empty_db, "-f", "sql/install.psql", cwd=sql_copy.parent).returncode == 0
    first = sorted((sql_copy / "migrations").glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")
    with psycopg.connect(empty_db, autocommit=True) as conn, \
            pytest.raises(MigrationError, match="was changed after it was applied"):
        migrate(conn, sql_copy, **QUIET)
    result = psql(empty_db, "-f", "sql/install.psql", cwd=sql_copy.parent)
    assert result.returncode != 0 and "was changed after it was applied" in result.stderr


def test_psql_path_stops_at_a_migration_that_commits_on_its_own(empty_db, sql_copy):
    (sql_copy / "migrations" / "9999_commits.sql").write_text(
        "CREATE TABLE half_done (x int);\nCOMMIT;\nINSERT INTO _monitoring_migrations (version, name) VALUES ('9999', 'commits');\n")
    (sql_copy / "install.psql").write_text(render().replace(
        "\\set file routing.sql", "\\set version 9999\n\\set file 9999_commits.sql\n\\ir psql/migration.psql\n\\set file routing.sql", 1))
    result = psql(empty_db, "-f", "sql/install.psql", cwd=sql_copy.parent)
    assert result.returncode != 0
    assert "9999_commits.sql ended the transaction it was applied in" in result.stderr


def test_psql_path_refuses_to_run_where_it_cannot_read_its_files(empty_db, tmp_path):
    result = psql(empty_db, "-f", str(SQL_DIR / "install.psql"), cwd=tmp_path)
    assert result.returncode != 0 and "reads its files from sql/" in result.stderr
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('_monitoring_migrations')").fetchone() == (None,)


# --- one body per object, and upgrades -------------------------------------------------------------------

DEFINED = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:CONSTRAINT\s+)?(FUNCTION|TRIGGER|VIEW)\s+(\w+)(?:.*?\sON\s+(\w+))?",
    re.IGNORECASE | re.DOTALL,
)


def test_every_function_trigger_and_view_has_one_body_in_one_file(conn):
    homes: dict[tuple[str, str], list[str]] = {}
    for migration in discover_migrations():
        for statement in statements(migration.text):
            assert not DEFINED.match(re.sub(r"^(\s*--[^\n]*\n)*", "", statement + "\n")), \
                f"{migration.name} defines a function, trigger or view: it belongs in sql/<concern>.sql"
    for definition in discover_definitions():
        for statement in statements(definition.text):
            match = DEFINED.match(re.sub(r"^(\s*--[^\n]*\n)*", "", statement + "\n"))
            if match:
                kind, name, table = match[1].upper(), match[2], match[3] if match[1].upper() == "TRIGGER" else ""
                homes.setdefault((kind, f"{table}.{name}" if table else name), []).append(definition.name)
    assert {k: v for k, v in homes.items() if len(v) > 1} == {}
    in_database = conn.execute("""
        SELECT 'FUNCTION', proname FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace AND proname LIKE '%monitoring%'
          AND proname NOT IN (SELECT unnest(ARRAY['_monitoring_migration_is_pending', '_monitoring_record_migration',
                                                  '_monitoring_definitions_are_current', '_monitoring_record_definitions']))
        UNION ALL
        SELECT 'TRIGGER', tgrelid::regclass::text || '.' || tgname FROM pg_trigger WHERE NOT tgisinternal
        UNION ALL
        SELECT 'VIEW', relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'v'
    """).fetchall()
    assert set(homes) == set(in_database)


def test_released_checksums_are_mapped_to_todays_files():
    text = (SQL_DIR / "bookkeeping.sql").read_text()
    today = dict(re.findall(r"\('(\d{4})', '[0-9a-f]{64}', '([0-9a-f]{64})'\)", text))
    assert today == {m.version: m.checksum for m in discover_migrations() if m.version <= "0011"}
    released = dict(re.findall(r"\('(\d{4})', '([0-9a-f]{64})', '[0-9a-f]{64}'\)", text))
    # what 0.1.0's migrator recorded: the SHA-256 of each whole file
    assert released == {p.name[:4]: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(LEGACY.glob("*.sql"))}


def test_a_database_built_by_0_1_0_upgrades_to_exactly_the_schema_of_a_fresh_one(empty_db):
    name = f"pgalert_fresh_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER.url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(SERVER.url(name), autocommit=True) as conn:
            migrate(conn, **QUIET)
        apply_legacy(empty_db)
        with psycopg.connect(empty_db, autocommit=True) as conn:
            plan = migrate(conn, **QUIET)
        newer = [m.name for m in discover_migrations() if m.version > "0011"]
        assert plan.migrations == newer and plan.definitions == [d.name for d in discover_definitions()]
        fresh, upgraded = schema_dump(SERVER.url(name)), schema_dump(empty_db)
        assert {k for k in fresh if fresh[k] != upgraded.get(k)} | (upgraded.keys() - fresh.keys()) == set()
    finally:
        with psycopg.connect(SERVER.url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_an_upgrade_from_0_1_0_keeps_alerts_deliveries_rules_schedules_and_sla_rows(empty_db):
    apply_legacy(empty_db)
    tables = ["monitoring_alerts", "monitoring_deliveries", "monitoring_delivery_attempts", "monitoring_alert_rules",
              "monitoring_schedules", "monitoring_sla_metrics", "monitoring_alert_escalations", "monitoring_events",
              "_monitoring_installation"]
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message) "
                     "VALUES ('payment_failure', 'critical', 'Test', 'Test PagerDuty')")
        conn.execute("SELECT monitoring_raise_alert('db_down', 'warning', 'Primary down')")
        conn.execute("SELECT monitoring_acknowledge_alert(1, 'alice', 'looking')")
        conn.execute("INSERT INTO monitoring_events (event_type, value) VALUES ('api_response_time', 2350)")
        conn.execute("INSERT INTO monitoring_alert_rules (rule_name, rule_type, query, severity) "
                     "VALUES ('custom_sql', 'sql', 'SELECT 1 AS value WHERE false', 'info')")
        before = {t: conn.execute(f"SELECT to_jsonb(t) FROM {t} AS t ORDER BY 1::text").fetchall() for t in tables}
        assert all(before[t] for t in tables if t != "monitoring_delivery_attempts"), before
        migrate(conn, **QUIET)
        after = {t: conn.execute(f"SELECT to_jsonb(t) FROM {t} AS t ORDER BY 1::text").fetchall() for t in tables}
        # columns added since 0.1.0 are empty on old rows; every other value is as it was
        added = {"acknowledged_via", "resolved_via", "reported_occurred_at"}
        assert {k: v for k, v in after["monitoring_alerts"][1][0].items() if k in added} == dict.fromkeys(added)
        after = {t: [({k: v for k, v in row.items() if k not in added},) for (row,) in rows] for t, rows in after.items()}
        # and jobs added since, every one of the old kept as it was
        new_jobs = [row for row in after["monitoring_schedules"] if row not in before["monitoring_schedules"]]
        assert sorted(job["job_name"] for (job,) in new_jobs) == ["pgalert_flush_groups", "pgalert_heartbeat",
                                                                      "pgalert_release_holds", "pgalert_settle_flapping"]
        after["monitoring_schedules"] = [row for row in after["monitoring_schedules"] if row not in new_jobs]
        # the acknowledged alert's escalation, left running until its next step, ended at the acknowledge (0039)
        [acknowledged_at] = [a["acknowledged_at"] for (a,) in before["monitoring_alerts"] if a["id"] == 1]
        [(escalation,)] = before["monitoring_alert_escalations"]
        assert escalation["alert_id"] == 1 and escalation["finished_at"] is None
        before["monitoring_alert_escalations"] = [({**escalation, "finished_at": acknowledged_at,
                                                    "finish_reason": "acknowledged", "next_step_at": None},)]
        assert after == before
        # and the upgraded database works: a resolve reaches the providers that heard of the alert
        conn.execute("SELECT monitoring_resolve_alert(1, 'alice')")
        assert conn.execute("SELECT count(*) FROM monitoring_deliveries WHERE alert_id = 1 AND action = 'resolve'").fetchone()[0] > 0


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
                    SELECT format('DROP %s IF EXISTS %s CASCADE',
                                  CASE relkind WHEN 'v' THEN 'VIEW' WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END, oid::regclass)
                    FROM pg_class
                    WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v', 'c') AND NOT relispartition
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


def test_with_pg_cron_migrate_says_pg_cron_runs_the_jobs_and_names_what_stops_it(cron_db):
    """pg_cron present: the jobs are its own; then its runs fail (as when it logs in without the password
    scram asks for), or pgalert's jobs are gone from it, and migrate, the dispatchers and the stalled alert say
    so (#37, 1, 2 and 4). The failures are written as pg_cron records them: no minute is waited for."""
    runner = CliRunner()
    first = runner.invoke(cli, ["migrate", "--database-url", cron_db])
    assert first.exit_code == 0, first.output
    assert first.output.splitlines()[-1].startswith("Scheduled jobs: pg_cron runs pgalert's ")
    with psycopg.connect(cron_db, autocommit=True) as conn:
        assert conn.execute("SELECT * FROM monitoring_scheduler_mode()").fetchone() == ("pg_cron", None)
        # pg_cron's heartbeat logs in where nothing listens: a minute that passes meanwhile fails like the row below
        conn.execute("UPDATE cron.job SET nodeport = %s WHERE jobname = 'pgalert_heartbeat'", (free_port(),))
        conn.execute("UPDATE monitoring_scheduler_heartbeat SET cron_beat_at = now() - interval '10 minutes', "
                     "installed_at = now() - interval '1 hour'")
        conn.execute("""INSERT INTO cron.job_run_details (jobid, runid, database, username, command, status,
                                                          return_message, start_time, end_time)
                        SELECT jobid, nextval('cron.runid_seq'), database, username, command, 'failed',
                               'connection failed', now() - interval '1 minute', now() - interval '1 minute'
                        FROM cron.job WHERE jobname = 'pgalert_heartbeat'""")
        problem, fix = conn.execute("SELECT problem, superuser_sql FROM monitoring_scheduler_diagnosis()").fetchone()
        assert problem.startswith("pg_cron has not run pgalert's heartbeat for ")
        assert problem.endswith(" s: its runs fail: connection failed")
        assert "ALTER SYSTEM SET cron.use_background_workers = on;" in fix
        assert conn.execute("SELECT mode FROM monitoring_scheduler_mode()").fetchone() == ("dispatcher",)
        # the dispatchers run the jobs meanwhile, and that is not pg_cron running them
        ran = conn.execute("SELECT count(*) FILTER (WHERE monitoring_run_scheduled_job(job_name, tick, 'd1')) "
                           "FROM monitoring_due_scheduled_jobs()").fetchone()[0]
        assert ran > 0
        assert conn.execute("SELECT mode FROM monitoring_scheduler_mode()").fetchone() == ("dispatcher",)
        # were no dispatcher to run them, the stalled alert would name the cause and the mend (its check would
        # also point the job back at this server, which this test keeps from happening)
        conn.execute("DELETE FROM monitoring_scheduler_ticks")
        message = conn.execute("SELECT _monitoring_scheduler_stall_cause()").fetchone()[0]
        assert "its runs fail: connection failed" in message and "cron.use_background_workers = on" in message
        conn.execute("SELECT cron.unschedule('pgalert_heartbeat')")
        assert conn.execute("SELECT problem FROM monitoring_scheduler_diagnosis()").fetchone() == (
            "pgalert's jobs are not scheduled in pg_cron",)
        # an owner without rights on schema cron: migrate succeeds, schedules nothing, and says what to GRANT
        conn.execute("DROP ROLE IF EXISTS pgalert_owner_without_cron")
        conn.execute("CREATE ROLE pgalert_owner_without_cron IN ROLE monitoring_admin")
        try:
            conn.execute("ALTER FUNCTION monitoring_scheduler_diagnosis(interval) OWNER TO pgalert_owner_without_cron")
            assert conn.execute("SELECT problem, superuser_sql LIKE '%%GRANT USAGE ON SCHEMA cron TO "
                                "pgalert_owner_without_cron;%%' FROM monitoring_scheduler_diagnosis()").fetchone() == (
                "pgalert_owner_without_cron, who owns pgalert's jobs, has no rights on schema cron", True)
            notices = []
            conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
            conn.execute("SET ROLE pgalert_owner_without_cron")
            assert conn.execute("SELECT monitoring_install_schedules()").fetchone() == (0,)
            assert any("has no rights on schema cron" in n for n in notices)
        finally:
            conn.execute("RESET ROLE")
            conn.execute("ALTER FUNCTION monitoring_scheduler_diagnosis(interval) OWNER TO CURRENT_USER")
            conn.execute("DROP ROLE pgalert_owner_without_cron")


@pytest.mark.long
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
