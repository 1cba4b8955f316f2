"""The checked-in references say what the code is: regenerate with `make reference` when one of these fails."""

from __future__ import annotations

import click
import pytest

from devtools import reference
from dispatcher.cli import cli

STALE = "is stale: run `make reference` and commit the result"


def test_the_schema_file_is_what_migrate_builds(db_url):
    assert reference.schema_sql(db_url) == reference.SCHEMA.read_text(), f"{reference.SCHEMA.name} {STALE}"


def test_the_sql_reference_is_current(conn):
    assert reference.sql_reference(conn) == reference.SQL_REFERENCE.read_text(), f"docs/reference/sql.md {STALE}"


def test_the_cli_reference_is_current():
    assert reference.cli_reference() == reference.CLI_REFERENCE.read_text(), f"docs/reference/cli.md {STALE}"


def test_every_public_function_says_what_it_does(conn):
    undocumented = conn.execute("""
        SELECT p.oid::regprocedure::text FROM pg_proc AS p
        WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'monitoring\\_%'
          AND coalesce(btrim(obj_description(p.oid, 'pg_proc')), '') = ''""").fetchall()
    assert undocumented == []


def test_every_public_table_view_and_trigger_says_what_it_is(conn):
    undocumented = conn.execute("""
        SELECT 'table ' || c.relname FROM pg_class AS c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition
          AND c.relname LIKE 'monitoring\\_%' AND coalesce(btrim(obj_description(c.oid, 'pg_class')), '') = ''
        UNION ALL
        SELECT 'trigger ' || t.tgname || ' on ' || c.relname FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid
        WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace AND NOT c.relispartition
          AND coalesce(btrim(obj_description(t.oid, 'pg_trigger')), '') = ''
        ORDER BY 1""").fetchall()
    assert undocumented == []


@pytest.mark.parametrize(("path", "command"), reference.cli_commands(cli), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_cli_command_and_option_has_help(path, command):
    assert (command.help or "").strip(), f"{' '.join(path)} has no help"
    for parameter in command.params:
        if isinstance(parameter, click.Option) and parameter.name != "help":
            assert (parameter.help or "").strip() or parameter.is_flag and parameter.name == "version", \
                f"{' '.join(path)} {parameter.opts[0]} has no help"
