"""Install or upgrade pgalert's schema: versioned migrations, then the files of current definitions.

One run is one transaction under an advisory lock, so concurrent runs wait for each other and a failure
leaves the database as it was. In order:
1. sql/bookkeeping.sql: the tables that record what was applied, and the rules for applying more;
2. every migration of sql/migrations not yet applied (tables, indexes, constraints, data), each checked
   against the checksum it was applied with;
3. every file of sql/definitions.txt whose checksum changed since it was last applied, or all of them after
   a migration (a migration may drop what a definition needs);
4. sql/after_migrate.sql, when anything was applied.
Then it says how the scheduled jobs will run (scheduler_summary): under pg_cron, or in the dispatchers, with
the SQL a superuser runs where pg_cron cannot.
sql/install.psql does the same with psql alone. The SQL ships inside the wheel as the package dispatcher.sql.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable

import psycopg

SQL_ROOT = importlib.resources.files("dispatcher.sql")
MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# pg_advisory_xact_lock key shared by every `pgalert migrate` and sql/install.psql: one at a time per database
LOCK_KEY = 1886414689_0001
# statements that end or nest the transaction both install paths wrap around every file
TRANSACTION_CONTROL = re.compile(
    r"^\s*(BEGIN|COMMIT|ROLLBACK|END|ABORT|START\s+TRANSACTION|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b",
    re.IGNORECASE,
)


class MigrationError(Exception):
    pass


def checksum(text: str) -> str:
    """SHA-256 of a file's text without one trailing newline: what psql's \\set x `cat FILE` reads."""
    return hashlib.sha256(text.removesuffix("\n").encode()).hexdigest()


@dataclass(frozen=True)
class SqlFile:
    name: str
    text: str = field(repr=False)

    @property
    def checksum(self) -> str:
        return checksum(self.text)


@dataclass(frozen=True)
class Migration(SqlFile):
    version: str = ""


def _read(resource: Traversable) -> SqlFile:
    return SqlFile(resource.name, resource.read_text(encoding="utf-8"))


def discover_migrations(root: Traversable = SQL_ROOT) -> list[Migration]:
    migrations = []
    for resource in sorted((r for r in (root / "migrations").iterdir() if r.name.endswith(".sql")),
                           key=lambda r: r.name):
        match = MIGRATION_NAME.match(resource.name)
        if not match:
            raise MigrationError(f"{resource.name}: migration files are named NNNN_snake_case.sql")
        text = _refuse_transaction_control(resource.name, resource.read_text(encoding="utf-8"))
        migrations.append(Migration(resource.name, text, match[1]))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return migrations


def discover_definitions(root: Traversable = SQL_ROOT) -> list[SqlFile]:
    names = [line.strip() for line in (root / "definitions.txt").read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.startswith("#")]
    return [SqlFile(name, _refuse_transaction_control(name, (root / name).read_text(encoding="utf-8")))
            for name in names]


def _refuse_transaction_control(name: str, text: str) -> str:
    statement = first_transaction_control(text)
    if statement:
        raise MigrationError(
            f"{name} contains {statement!r}: a file must not end or nest its transaction (both install paths "
            "apply it inside theirs, and a COMMIT there would leave half of the run behind)"
        )
    return text


def statements(text: str) -> list[str]:
    """Top-level SQL statements: semicolons inside quotes, dollar quotes and comments do not split."""
    result, start, i, n = [], 0, 0, len(text)
    while i < n:
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif text[i] in "'\"":
            quote, i = text[i], i + 1
            while i < n and not (text[i] == quote and not text.startswith(quote * 2, i)):
                i += 2 if text.startswith(quote * 2, i) else 1
            i += 1
        elif (tag := re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", text[i:])) is not None:
            end = text.find(tag[0], i + len(tag[0]))
            i = n if end < 0 else end + len(tag[0])
        elif text[i] == ";":
            result.append(text[start:i])
            start = i = i + 1
        else:
            i += 1
    if text[start:].strip():
        result.append(text[start:])
    return result


def _without_comments(statement: str) -> str:
    return re.sub(r"^(\s*--[^\n]*\n)*", "", statement + "\n").strip()


def first_transaction_control(text: str) -> str | None:
    for statement in statements(text):
        code = _without_comments(statement)
        if TRANSACTION_CONTROL.match(code):
            return code.split("\n", 1)[0][:60]
    return None


@dataclass
class Plan:
    migrations: list[str] = field(default_factory=list)
    definitions: list[str] = field(default_factory=list)

    @property
    def pending(self) -> bool:
        return bool(self.migrations or self.definitions)


def migrate(conn: psycopg.Connection, root: Traversable = SQL_ROOT, log=print, check_only: bool = False) -> Plan:
    """Apply what is missing or changed (or, with check_only, only find out what that is and roll back).

    Raises MigrationError for a migration edited after it was applied, applied without a checksum, that does
    not record itself, or that ends its own transaction; nothing is applied then."""
    if not conn.autocommit:
        raise MigrationError("migrate needs an autocommit connection: it runs its own transaction")
    migrations, definitions = discover_migrations(root), discover_definitions(root)
    plan = Plan()
    try:
        with conn.transaction(force_rollback=check_only):
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            conn.execute(_read(root / "bookkeeping.sql").text)
            for migration in migrations:
                pending = conn.execute("SELECT _monitoring_migration_is_pending(%s, %s, %s)",
                                       (migration.version, migration.name, migration.checksum)).fetchone()[0]
                if not pending:
                    continue
                plan.migrations.append(migration.name)
                if check_only:
                    # what follows depends on this file having run; a check stops at what it knows
                    conn.execute("SELECT set_config('pgalert.schema_changed', 'on', TRUE)")
                    continue
                transaction = conn.execute("SELECT pg_current_xact_id()").fetchone()[0]
                conn.execute(migration.text)
                conn.execute("SELECT _monitoring_record_migration(%s, %s, %s, %s)",
                             (migration.version, migration.name, migration.checksum, transaction))
                log(f"applied migrations/{migration.name}")
            for definition in definitions:
                current = conn.execute("SELECT _monitoring_definitions_are_current(%s, %s)",
                                       (definition.name, definition.checksum)).fetchone()[0]
                if current:
                    continue
                plan.definitions.append(definition.name)
                if not check_only:
                    conn.execute(definition.text)
                    conn.execute("SELECT _monitoring_record_definitions(%s, %s)",
                                 (definition.name, definition.checksum))
                    log(f"applied {definition.name}")
            if plan.pending and not check_only:
                conn.execute(_read(root / "after_migrate.sql").text)
    except psycopg.errors.ObjectNotInPrerequisiteState as error:
        raise MigrationError(_message(error)) from None
    except psycopg.errors.InvalidTransactionTermination as error:
        raise MigrationError(_message(error)) from None
    if plan.pending and not check_only:
        # in a small transaction of its own, so pg_cron hears of the jobs just scheduled (sql/schedules.sql)
        conn.execute("SELECT monitoring_refresh_scheduler()")
    return plan


def scheduler_summary(conn: psycopg.Connection, superuser_script: str | None = None) -> tuple[str, str | None]:
    """How the scheduled jobs will run, in words (sql/schedules.sql), and the SQL a superuser must run for pg_cron
    to run them (None when it does). With superuser_script, the words name that file instead of holding the SQL."""
    (superuser_sql,) = conn.execute("SELECT (SELECT superuser_sql FROM monitoring_scheduler_diagnosis())").fetchone()
    (summary,) = conn.execute("SELECT monitoring_scheduler_summary(%s)",
                              (superuser_script if superuser_sql else None,)).fetchone()
    return summary, superuser_sql


def _message(error: psycopg.Error) -> str:
    hint = error.diag.message_hint
    return f"{error.diag.message_primary}" + (f" ({hint})" if hint else "")
