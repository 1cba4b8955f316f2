"""The CLI's commands against a real database (CliRunner in process): migrate, sla, oncall."""

from __future__ import annotations

import json

from click.testing import CliRunner

from dispatcher.cli import cli


def test_migrate_reports_what_it_did(db_url):
    runner = CliRunner()
    first = runner.invoke(cli, ["migrate", "--database-url", db_url])
    assert first.exit_code == 0 and first.output.strip() == "database is up to date"


def test_migrate_check_exits_1_while_anything_is_pending_and_0_after(empty_db):
    runner = CliRunner()
    pending = runner.invoke(cli, ["migrate", "--check", "--database-url", empty_db])
    assert pending.exit_code == 1 and "pending: migrations/0001_core.sql" in pending.output
    assert "pending: alerts.sql" in pending.output
    assert runner.invoke(cli, ["migrate", "--database-url", empty_db]).exit_code == 0
    done = runner.invoke(cli, ["migrate", "--check", "--database-url", empty_db])
    assert done.exit_code == 0 and done.output.strip() == "database is up to date"


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
