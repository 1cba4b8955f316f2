"""The CLI: every command has help, and bad input is a clear error (click's CliRunner, no daemon started)."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from dispatcher.cli import cli


def all_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [p for p, _ in all_commands(cli)], ids=" ".join)
def test_every_command_has_help(path):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    command = dict(all_commands(cli))[path]
    assert command.help and len(command.help) > 40
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help or param.name == "log_level", f"{path} --{param.name} has no help"


def test_dispatch_help_names_each_setting_in_the_environment():
    text = CliRunner().invoke(cli, ["dispatch", "--help"]).output
    for name in ("DATABASE_URL", "PGALERT_CONCURRENCY", "PGALERT_PACING", "PGALERT_METRICS_PORT", "PAGERDUTY_INTEGRATION_KEY"):
        assert name in text


@pytest.mark.parametrize(("args", "env", "message"), [
    (["dispatch", "--pacing", "slack=fast"], {}, "PROVIDER=COUNT/SECONDS"),
    (["dispatch"], {"PGALERT_WEBHOOK_URL": "https://x"}, "PGALERT_WEBHOOK_SECRET"),
    (["dispatch", "--lease-seconds", "10", "--http-timeout", "30"], {}, "--lease-seconds (10) must exceed"),
    (["dispatch", "--concurrency", "0"], {}, "0 is not in the range"),
    (["migrate", "--database-url", "postgresql://nobody@127.0.0.1:1/none"], {}, "cannot connect to PostgreSQL"),
    (["serve", "--console-auth-header", "X-Forwarded-Email"], {}, "needs --console-trusted-proxies"),
    (["serve", "--console-auth-header", "X-Forwarded-Email", "--console-trusted-proxies", "10.0.0.300"], {},
     "--console-trusted-proxies: not an address"),
])
def test_bad_input_is_a_clear_error(args, env, message):
    result = CliRunner().invoke(cli, args, env={"DATABASE_URL": "", **env})
    assert result.exit_code != 0
    assert message in result.output


def test_every_named_query_the_code_runs_exists_and_none_is_left_unused():
    """cli.py, inbound/app.py and the console run SQL only by name, from commands.sql, inbound/queries.sql and
    console/queries.sql."""
    import re
    from pathlib import Path

    from dispatcher.db import COMMANDS_FILE, INBOUND_FILE, named_queries

    package = Path(__file__).resolve().parents[2] / "dispatcher"
    console = package / "console"
    for code, queries, call in ((package / "cli.py", COMMANDS_FILE, r"command_sql\(([^)]*)\)"),
                                (package / "inbound" / "app.py", INBOUND_FILE, r"self\.call\(([^,]*),"),
                                (console / "app.py", console / "queries.sql",
                                 r"self\.fetch\((\"\w+\"(?: if [^)]*? else \"\w+\")?)|_queries\[(\"\w+\")\]"
                                 r"|, (\"alert_\w+\")\)")):
        text = code.read_text() + ((console / "feed.py").read_text() if code.parent == console else "")
        found = [" ".join(groups) if isinstance(groups, tuple) else groups for groups in re.findall(call, text)]
        used = {name for arguments in found for name in re.findall(r'"(\w+)"', arguments)}
        assert used and used == set(named_queries(queries)), (code.name, used ^ set(named_queries(queries)))
        assert "SELECT" not in re.sub(r'"""[\s\S]*?"""', "", text), f"{code.name} has SQL of its own"
