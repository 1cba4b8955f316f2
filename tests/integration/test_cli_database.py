"""The CLI's commands against a real database (CliRunner in process): migrate, sla, oncall."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dispatcher.cli import cli


def test_migrate_reports_what_it_did_and_how_the_scheduled_jobs_will_run(db_url, tmp_path):
    """A test database is not pg_cron's: migrate says so, who runs the jobs instead, and what a superuser runs
    (#37, 2)."""
    runner = CliRunner()
    first = runner.invoke(cli, ["migrate", "--database-url", db_url])
    lines = first.output.splitlines()
    assert first.exit_code == 0 and lines[0] == "database is up to date"
    assert lines[1].startswith("Scheduled jobs: pg_cron cannot run pgalert's ")
    assert lines[1].endswith("jobs here: pg_cron runs in database pgalert, not in "
                             f"{db_url.rsplit('/', 1)[1]} (cron.database_name).")
    assert lines[2].startswith("Until it can, `pgalert dispatch` runs them (--scheduler auto, the default)")
    assert "ALTER SYSTEM SET cron.database_name" in first.output and "CREATE EXTENSION IF NOT EXISTS pg_cron;" in first.output
    # or the SQL goes to a file to hand to a superuser, which the output names
    script = tmp_path / "for-the-dba.sql"
    second = runner.invoke(cli, ["migrate", "--database-url", db_url, "--superuser-script", str(script)])
    assert second.exit_code == 0 and f"a superuser runs {script} in database" in second.output
    assert "ALTER SYSTEM" not in second.output
    assert script.read_text().startswith("ALTER SYSTEM SET cron.database_name")


@pytest.mark.cluster_roles  # migrates a database of its own: roles are the cluster's
def test_migrate_check_exits_1_while_anything_is_pending_and_0_after(empty_db):
    runner = CliRunner()
    pending = runner.invoke(cli, ["migrate", "--check", "--database-url", empty_db])
    assert pending.exit_code == 1 and "pending: migrations/0001_core.sql" in pending.output
    assert "pending: alerts.sql" in pending.output
    assert runner.invoke(cli, ["migrate", "--database-url", empty_db]).exit_code == 0
    done = runner.invoke(cli, ["migrate", "--check", "--database-url", empty_db])
    assert done.exit_code == 0 and done.output.strip() == "database is up to date"  # --check says no more


def test_sla_command_against_a_database(db_url, conn):
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title) VALUES ('x', 'info', 't')")
    conn.execute("SELECT monitoring_resolve_alert(1, 'a', NULL, true)")
    result = CliRunner().invoke(cli, ["sla", "--database-url", db_url, "--hours", "1", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = {r["metric"]: r for r in json.loads(result.output)}
    assert rows["false_positive_rate"]["mean"] == 1.0 and rows["false_positive_rate"]["target_met"] is False
    by = CliRunner().invoke(cli, ["sla", "--database-url", db_url, "--by", "severity"])
    assert by.exit_code == 0 and "false_positive_rate" in by.output and "info" in by.output


def test_oncall_command_lists_now_and_the_coming_shifts(db_url):
    result = CliRunner().invoke(cli, ["oncall", "--database-url", db_url, "--format", "json", "--weeks", "4"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert rows[0]["kind"] == "now" and rows[0]["schedule"] == "primary"
    shifts = [r for r in rows if r["kind"] == "shift"]
    assert 4 <= len(shifts) <= 5 and {r["person"] for r in shifts} == {"primary_engineer_1", "primary_engineer_2"}
    missing = CliRunner().invoke(cli, ["oncall", "--database-url", db_url, "--schedule", "nope"])
    assert missing.exit_code != 0 and "schedule 'nope' does not exist" in missing.output


def test_silence_add_list_and_expire(db_url, conn):
    runner = CliRunner()
    added = runner.invoke(cli, ["silence", "add", "--database-url", db_url, "--match", "alert_type=deploy_check",
                                "--match", "labels.env=~prod|staging", "--for", "2h", "--comment", "deploy of api 4.2"])
    assert added.exit_code == 0, added.output
    silence_id = int(added.output.strip())
    conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, details) "
                 "VALUES ('deploy_check', 'critical', 't', '{\"labels\": {\"env\": \"prod\"}}')")
    listed = json.loads(runner.invoke(cli, ["silence", "list", "--database-url", db_url, "--format", "json"]).output)
    assert [(s["id"], s["comment"], s["holding"]) for s in listed] == [(silence_id, "deploy of api 4.2", 1)]
    expired = runner.invoke(cli, ["silence", "expire", "--database-url", db_url, str(silence_id)])
    assert expired.exit_code == 0 and conn.execute(
        "SELECT count(*) FROM monitoring_deliveries WHERE status = 'pending'").fetchone() == (3,)
    assert json.loads(runner.invoke(cli, ["silence", "list", "--database-url", db_url, "--format", "json"]).output) == []
    assert len(json.loads(runner.invoke(cli, ["silence", "list", "--all", "--database-url", db_url, "--format", "json"]).output)) == 1
    again = runner.invoke(cli, ["silence", "expire", "--database-url", db_url, str(silence_id)])
    assert again.exit_code == 1 and "already ended" in again.output


def test_silence_add_refuses_bad_input_with_the_reason(db_url, conn):
    runner = CliRunner()
    for args, reason in ([["--match", "title=x", "--for", "1h"], "not FIELD OP VALUE"],
                         [["--match", "alert_type=x"], "give --for or --until"],
                         [["--match", "alert_type=x", "--for", "soon"], "not like 2h"]):
        result = runner.invoke(cli, ["silence", "add", "--database-url", db_url, "--comment", "c", *args])
        assert result.exit_code == 2 and reason in result.output
    assert conn.execute("SELECT count(*) FROM monitoring_silences").fetchone() == (0,)


def test_api_clients_are_created_listed_and_revoked_without_their_tokens(db_url):
    runner = CliRunner()
    created = runner.invoke(cli, ["api-client", "create", "ci", "--database-url", db_url])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[0]
    assert runner.invoke(cli, ["api-client", "revoke", "ci", "--database-url", db_url]).exit_code == 0
    listed = runner.invoke(cli, ["api-client", "list", "--database-url", db_url, "--format", "json"])
    [client] = json.loads(listed.output)
    assert client["name"] == "ci" and client["revoked_at"] is not None and token not in listed.output
    again = runner.invoke(cli, ["api-client", "revoke", "ci", "--database-url", db_url])
    assert again.exit_code == 1 and "no active API client is named ci" in again.output


def test_contact_methods_are_added_verified_and_test_paged_by_an_admin_login(login_url, conn):
    admin_url = login_url("monitoring_admin")
    conn.execute("INSERT INTO monitoring_people (name) VALUES ('alice')")
    runner = CliRunner()
    added = runner.invoke(cli, ["contact", "add", "alice", "sms", "+14155550123", "--after", "0", "--after", "3 minutes",
                                "--database-url", admin_url])
    assert added.exit_code == 0, added.output
    method_id = int(added.stdout.strip())
    bad = runner.invoke(cli, ["contact", "add", "alice", "sms", "555-0100", "--database-url", admin_url])
    assert bad.exit_code == 1 and "phone_is_e164" in bad.output
    sent = runner.invoke(cli, ["contact", "send-code", str(method_id), "--database-url", admin_url])
    assert sent.exit_code == 0 and "a code is on its way" in sent.output
    code = conn.execute("SELECT context ->> 'code' FROM monitoring_claim_deliveries('test', 100) WHERE target = %s",
                        (f"verify:{method_id}",)).fetchone()[0]  # only the sending dispatcher reads it
    wrong = runner.invoke(cli, ["contact", "verify", str(method_id), "000000" if code != "000000" else "111111",
                                "--database-url", admin_url])
    assert wrong.exit_code == 1 and "wrong code" in wrong.output
    right = runner.invoke(cli, ["contact", "verify", str(method_id), code, "--database-url", admin_url])
    assert right.exit_code == 0, right.output
    listed = json.loads(runner.invoke(cli, ["contact", "list", "--person", "alice", "--format", "json",
                                            "--database-url", admin_url]).output)
    assert [(m["kind"], m["address"], m["verified_at"] is not None, m["rule_delays"]) for m in listed] == [
        ("sms", "+14155550123", True, "00:00:00, 00:03:00")]
    tested = runner.invoke(cli, ["page", "test", "alice", "--database-url", admin_url])
    assert tested.exit_code == 0, tested.output
    # both rules use the one number: two texts queued, on the twilio channel; the outbox keeps it masked
    assert tested.stdout.count("+1 ••• ••• 23") == 2 and tested.stdout.count("twilio") == 2
    # a reader lists the methods, never their addresses
    read = json.loads(runner.invoke(cli, ["contact", "list", "--format", "json",
                                          "--database-url", login_url("monitoring_reader")]).output)
    assert [m["address"] for m in read] == ["+1 ••• ••• 23"]
    # the number texts STOP: the list says so, as it says what is not verified
    assert read[0]["opted_out_at"] is None
    conn.execute("SELECT monitoring_inbound_contact_opt_out('twilio:stop', '+14155550123', TRUE)")
    stopped = json.loads(runner.invoke(cli, ["contact", "list", "--format", "json",
                                             "--database-url", login_url("monitoring_reader")]).output)
    assert stopped[0]["opted_out_at"] is not None
