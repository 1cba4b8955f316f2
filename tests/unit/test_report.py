from __future__ import annotations

import csv
import io
import json
from decimal import Decimal

from click.testing import CliRunner

from dispatcher.cli import cli
from dispatcher.report import render

COLUMNS = ["metric", "samples", "mean", "target_met"]
ROWS = [("mttd", 3, Decimal("70.000"), True), ("mtta", 0, None, None)]


def test_table_is_aligned_and_readable():
    lines = render(COLUMNS, ROWS).splitlines()
    assert lines[0].split() == COLUMNS
    assert lines[2].split() == ["mttd", "3", "70", "yes"]
    assert len({line.index("samples") for line in lines[:1]}) == 1 and lines[3].split() == ["mtta", "0"]


def test_json_and_csv_are_machine_readable():
    assert json.loads(render(COLUMNS, ROWS, "json"))[0] == {"metric": "mttd", "samples": 3, "mean": 70.0, "target_met": True}
    assert list(csv.reader(io.StringIO(render(COLUMNS, ROWS, "csv"))))[1] == ["mttd", "3", "70", "yes"]


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
