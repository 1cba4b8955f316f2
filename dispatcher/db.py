"""PostgreSQL connections and the named queries of queries.sql. The LISTEN connection lives here too."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

QUERIES_FILE = Path(__file__).with_name("queries.sql")  # the dispatcher's
COMMANDS_FILE = Path(__file__).with_name("commands.sql")  # the CLI's
INBOUND_FILE = Path(__file__).parent / "inbound" / "queries.sql"  # pgalert serve's


@cache
def named_queries(path: Path) -> dict[str, str]:
    """The statements of a .sql file of named queries (`-- name: NAME` before each), by name."""
    blocks = re.split(r"^-- name: (\w+)\n", path.read_text(), flags=re.MULTILINE)
    return {name: body.strip() for name, body in zip(blocks[1::2], blocks[2::2], strict=True)}


def queries() -> dict[str, str]:
    return named_queries(QUERIES_FILE)


def connect(url: str, *, connect_timeout: float = 3.0, application_name: str = "pgalert") -> psycopg.Connection:
    """An autocommit connection: every call below is one statement, atomic on its own."""
    return psycopg.connect(
        url, autocommit=True, connect_timeout=max(int(connect_timeout), 1), application_name=application_name,
    )


# Reasons a connection fails that time mends: the server is down, restarting, full, or not yet resolvable.
# Anything else at start (no such database or role, a wrong password, a malformed URL) will not mend itself.
TRANSIENT_CONNECT_ERRORS = (
    "connection refused", "timeout expired", "timed out", "the database system is starting up",
    "the database system is shutting down", "the database system is in recovery mode", "too many clients",
    "could not translate host name", "no such file or directory", "server closed the connection",
    "connection reset", "network is unreachable", "no route to host",
)


def is_transient(error: psycopg.Error) -> bool:
    return any(reason in str(error).lower() for reason in TRANSIENT_CONNECT_ERRORS)


class DispatcherQueries:
    """The dispatcher's side of the SQL interface, one method per named query."""

    def __init__(self, conn: psycopg.Connection, dispatcher_id: str):
        self.conn = conn
        self.dispatcher_id = dispatcher_id

    def schema_version(self) -> str | None:
        """The latest migration applied here, or None where pgalert was never migrated."""
        if self.conn.execute(queries()["schema_version"]).fetchone()[0] is None:
            return None
        return self.conn.execute(queries()["latest_migration"]).fetchone()[0]

    def claim(self, limit: int, lease_seconds: float, paces: dict[str, dict[str, float]] | None = None) -> list[tuple]:
        """Due deliveries, claimed; those of a channel in `paces` only as far as its pace allows now."""
        params = {"dispatcher": self.dispatcher_id, "limit": limit, "lease_seconds": lease_seconds,
                  "paces": Jsonb(paces or {})}
        return self.conn.execute(queries()["claim"], params).fetchall()

    def complete(self, results: list[dict]) -> int:
        row = self.conn.execute(queries()["complete"], {"dispatcher": self.dispatcher_id, "results": Jsonb(results)})
        return row.fetchone()[0]

    def release(self, delivery_ids: list[int]) -> int:
        row = self.conn.execute(queries()["release"], {"dispatcher": self.dispatcher_id, "delivery_ids": delivery_ids})
        return row.fetchone()[0]

    def reserve_slots(self, provider: str, count: int, interval_seconds: float, burst: int) -> tuple[int, float]:
        params = {"provider": provider, "count": count, "interval_seconds": interval_seconds, "burst": burst}
        granted, wait = self.conn.execute(queries()["reserve_slots"], params).fetchone()
        return granted, max(wait, 0.0)

    def channels(self) -> list[tuple[str, str, dict, dict]]:
        return self.conn.execute(queries()["channels"]).fetchall()

    def seconds_until_next_due(self) -> float | None:
        return self.conn.execute(queries()["seconds_until_next_due"]).fetchone()[0]

    def queue(self) -> list[tuple[str, int, float]]:
        return self.conn.execute(queries()["queue"]).fetchall()

    def check_scheduler(self) -> tuple[float, bool]:
        """Seconds since pg_cron last ran pgalert's heartbeat, and whether that is recent enough."""
        _, seconds, running = self.conn.execute(queries()["check_scheduler"]).fetchone()
        return seconds, running

    def scheduler_mode(self, requested: str) -> tuple[str, str | None]:
        """Who runs the scheduled jobs ('pg_cron' or 'dispatcher'), and why not pg_cron when it does not."""
        return self.conn.execute(queries()["scheduler_mode"], {"requested": requested}).fetchone()

    def due_scheduled_jobs(self) -> list[tuple]:
        return self.conn.execute(queries()["due_scheduled_jobs"]).fetchall()

    def run_scheduled_job(self, job_name: str, tick: object, timeout_ms: int | None) -> bool:
        """Run one job's tick in a transaction of its own: the job's work and the record of its tick commit
        together, or neither does. False when another dispatcher runs or ran it."""
        with self.conn.transaction():
            if timeout_ms is not None:
                self.conn.execute(queries()["arm_job_timeout"], {"timeout_ms": timeout_ms})
            params = {"job_name": job_name, "tick": tick, "dispatcher": self.dispatcher_id}
            return self.conn.execute(queries()["run_scheduled_job"], params).fetchone()[0]

    def claim_health_checks(self, limit: int) -> list[tuple]:
        return self.conn.execute(queries()["claim_health_checks"], {"limit": limit}).fetchall()

    def record_health_check(self, check_id: int, status: int | None, response_ms: float | None,
                            error: str | None) -> None:
        params = {"check_id": check_id, "status": status, "response_ms": response_ms, "error": error}
        self.conn.execute(queries()["record_health_check"], params)

    def ensure_health_check(self, name: str, url: str, interval_seconds: float) -> None:
        params = {"name": name, "url": url, "interval_seconds": interval_seconds}
        self.conn.execute(queries()["ensure_health_check"], params)

    def messages_to_poll(self, limit: int) -> list[tuple[int, str, str, str]]:
        return self.conn.execute(queries()["messages_to_poll"], {"limit": limit}).fetchall()

    def message_polled(self, reference: str, status: str, error_code: str | None) -> str:
        params = {"reference": reference, "status": status, "error_code": error_code}
        return self.conn.execute(queries()["message_polled"], params).fetchone()[0]


def listen(conn: psycopg.Connection) -> None:
    conn.execute(queries()["listen"])


def notifications(conn: psycopg.Connection, timeout: float) -> Iterator[psycopg.Notify]:
    return conn.notifies(timeout=timeout)


def ping(conn: psycopg.Connection) -> None:
    conn.execute(queries()["ping"])
