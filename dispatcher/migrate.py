"""Apply sql/migrations in order: one transaction per file, a checksum per file, safe to run concurrently."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql" / "migrations"
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# pg_advisory_lock key shared by every `pgalert migrate`: one at a time per database
LOCK_KEY = 1886414689_0001


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_snake_case.sql")
        migrations.append(Migration(match[1], match[2], path))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return migrations


def applied(conn: psycopg.Connection) -> dict[str, str | None]:
    if conn.execute("SELECT to_regclass('_monitoring_migrations')").fetchone()[0] is None:
        return {}
    return dict(conn.execute("SELECT version, checksum FROM _monitoring_migrations").fetchall())


def migrate(conn: psycopg.Connection, directory: Path = MIGRATIONS_DIR, log=print) -> list[str]:
    """Apply what is missing; refuse a file edited after it was applied. Returns the versions applied now."""
    if not conn.autocommit:
        raise MigrationError("migrate needs an autocommit connection: each file is its own transaction")
    migrations = discover(directory)
    done = []
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    try:
        known = applied(conn)
        for migration in migrations:
            if migration.version in known:
                recorded = known[migration.version]
                if recorded is None:  # applied with psql: adopt it
                    conn.execute("UPDATE _monitoring_migrations SET checksum = %s WHERE version = %s",
                                 (migration.checksum, migration.version))
                elif recorded != migration.checksum:
                    raise MigrationError(
                        f"{migration.path.name} was changed after it was applied to this database "
                        f"(recorded checksum {recorded[:12]}, file now {migration.checksum[:12]}). "
                        "Applied migrations are immutable: restore the file and add a new migration instead."
                    )
                continue
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute("UPDATE _monitoring_migrations SET checksum = %s WHERE version = %s",
                             (migration.checksum, migration.version))
                if conn.execute("SELECT 1 FROM _monitoring_migrations WHERE version = %s",
                                (migration.version,)).fetchone() is None:
                    raise MigrationError(f"{migration.path.name} does not record itself in _monitoring_migrations")
            log(f"applied {migration.path.name}")
            done.append(migration.version)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    return done
