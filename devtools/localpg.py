"""A project-owned PostgreSQL 15 server with pg_cron, for the demo, the tests and the benchmarks.

initdb and pg_ctl refuse to run as root, so when we are root the cluster belongs to the `postgres` system
user and lives in a directory it owns (outside the checkout, which that user may not be able to enter);
as an ordinary user it lives in `.pg/` inside the checkout. Authentication is `trust` on 127.0.0.1 only:
this server exists for local development and is never a production recipe.

    python -m devtools.localpg start --name demo --port 55432
    python -m devtools.localpg stop  --name test
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("PGALERT_PG_BIN", "/usr/lib/postgresql/15/bin"))
PGBOUNCER = Path("/usr/sbin/pgbouncer")
REPO = Path(__file__).resolve().parent.parent
SUPERUSER = "postgres"
CRON_DATABASE = "pgalert"


@dataclass(frozen=True)
class LocalServer:
    name: str
    port: int
    pg_cron: bool = True  # False: a server without it, as on platforms that have none (Heroku)

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    @property
    def base_dir(self) -> Path:
        if self.as_root:
            digest = hashlib.sha256(str(REPO).encode()).hexdigest()[:10]
            return Path("/tmp") / f"pgalert-{digest}" / self.name
        return REPO / ".pg" / self.name

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "server.log"

    def url(self, dbname: str = CRON_DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(a) for a in args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True)

    def _prepare_dirs(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            account = pwd.getpwnam("postgres")
            for path in (self.base_dir.parent, self.base_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
                path.chmod(0o700)

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._run(PG_BIN / "pg_ctl", "status", "-D", self.data_dir, check=False).returncode == 0

    def init(self) -> None:
        self._prepare_dirs()
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._run(
            PG_BIN / "initdb", "-D", self.data_dir, "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--locale=C.UTF-8",
        )

    def _write_settings(self) -> None:
        """Rewritten before every start, so a cluster made by an older checkout gets today's settings."""
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base_dir}'",
            "shared_preload_libraries": "'pg_cron'",
            "cron.database_name": f"'{CRON_DATABASE}'",
            # libpq mode, pg_cron's default: each job is a client session, so the SET statement_timeout that
            # opens a SQL rule's job is enforced (background workers never arm the timer); the socket needs no
            # password under the trust auth initdb set up
            "cron.use_background_workers": "off",
            "cron.host": f"'{self.base_dir}'",
            **({} if self.pg_cron else {"shared_preload_libraries": "''", "cron.database_name": None,
                                         "cron.use_background_workers": None, "cron.host": None}),
            "max_worker_processes": "32",
            "max_connections": "200",
            "fsync": "off" if self.name == "test" else "on",
            "log_min_messages": "warning",
        }
        conf = "# written by devtools/localpg.py at every start\n"
        conf += "".join(f"{key} = {value}\n" for key, value in settings.items() if value is not None)
        conf_path = self.data_dir / "postgresql.auto.conf"
        conf_path.write_text(conf)
        if self.as_root:
            account = pwd.getpwnam("postgres")
            os.chown(conf_path, account.pw_uid, account.pw_gid)

    def _running_port(self) -> int | None:
        try:  # postmaster.pid: pid, data directory, start time, port, ...
            return int((self.data_dir / "postmaster.pid").read_text().split("\n")[3])
        except (OSError, IndexError, ValueError):
            return None

    def start(self) -> None:
        self.init()
        if self.is_running() and self._running_port() != self.port:
            self.stop()  # started by a run that chose another port: come back on ours
        if not self.is_running():
            self._write_settings()
            if _port_in_use(self.port):
                raise RuntimeError(
                    f"port {self.port} is taken by another server (another checkout's {self.name} server?); "
                    f"stop it, or choose another port (PGALERT_TEST_PORT / PGALERT_DEMO_PORT)")
            result = self._run(PG_BIN / "pg_ctl", "start", "-w", "-D", self.data_dir, "-l", self.log_file, check=False)
            if result.returncode != 0:
                log = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
                raise RuntimeError(f"PostgreSQL did not start ({self.data_dir}):\n{result.stderr}{log}")
        self._ensure_cron_database()

    def stop(self) -> None:
        if self.is_running():
            self._run(PG_BIN / "pg_ctl", "stop", "-w", "-m", "fast", "-D", self.data_dir)

    def restart(self) -> None:
        self._run(PG_BIN / "pg_ctl", "restart", "-w", "-m", "fast", "-D", self.data_dir, "-l", self.log_file)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def start_replica(self, name: str, port: int) -> LocalServer:
        """A hot standby of this server, streaming from it, on `port`: made anew each time (pg_basebackup -R)."""
        replica = LocalServer(name, port)
        replica.destroy()
        replica._prepare_dirs()
        replica._run(PG_BIN / "pg_basebackup", "-h", "127.0.0.1", "-p", self.port, "-U", SUPERUSER,
                     "-D", replica.data_dir, "-R", "-X", "stream", "-c", "fast")
        replica._write_settings()
        with (replica.data_dir / "postgresql.auto.conf").open("a") as conf:
            # what pg_basebackup -R wrote was replaced with the settings; say again where to stream from
            conf.write(f"primary_conninfo = 'host=127.0.0.1 port={self.port} user={SUPERUSER}'\nhot_standby = on\n")
        result = replica._run(PG_BIN / "pg_ctl", "start", "-w", "-D", replica.data_dir, "-l", replica.log_file,
                              check=False)
        if result.returncode != 0:
            log = replica.log_file.read_text()[-2000:] if replica.log_file.exists() else ""
            raise RuntimeError(f"the replica did not start ({replica.data_dir}):\n{result.stderr}{log}")
        return replica

    def _ensure_cron_database(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (CRON_DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{CRON_DATABASE}"')
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        if not self.pg_cron:
            return
        with psycopg.connect(self.url(CRON_DATABASE), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")


@dataclass(frozen=True)
class LocalBouncer:
    """PgBouncer in transaction pooling mode in front of a LocalServer, as apps often reach PostgreSQL.
    Trust authentication for the users named, on 127.0.0.1 only; run as `postgres` under root, as
    PgBouncer refuses to run as root."""

    server: LocalServer
    port: int
    users: tuple[str, ...] = (SUPERUSER,)

    @property
    def base_dir(self) -> Path:
        return self.server.base_dir.parent / f"pgbouncer-{self.server.name}"

    def url(self, dbname: str, user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> LocalBouncer:
        self.stop()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ini, users = self.base_dir / "pgbouncer.ini", self.base_dir / "userlist.txt"
        users.write_text("".join(f'"{user}" ""\n' for user in self.users))
        ini.write_text(
            f"[databases]\n* = host=127.0.0.1 port={self.server.port}\n\n[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir = {self.base_dir}\n"
            f"auth_type = trust\nauth_file = {users}\npool_mode = transaction\n"
            f"logfile = {self.base_dir / 'pgbouncer.log'}\npidfile = {self.base_dir / 'pgbouncer.pid'}\n"
            "max_client_conn = 100\ndefault_pool_size = 4\n"
        )
        if self.server.as_root:
            account = pwd.getpwnam("postgres")
            for path in (self.base_dir, ini, users):
                os.chown(path, account.pw_uid, account.pw_gid)
        self.server._run(PGBOUNCER, "-d", ini)
        deadline = time.monotonic() + 10
        while not _port_in_use(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PgBouncer did not start: {(self.base_dir / 'pgbouncer.log').read_text()[-1000:]}")
            time.sleep(0.05)
        return self

    @classmethod
    def start_on_a_free_port(cls, server: LocalServer, users: tuple[str, ...]) -> LocalBouncer:
        """A port the system has just handed out as free: any fixed port in the ephemeral range can be taken
        by some client's connection at the moment PgBouncer binds it. Tried anew should one be taken first."""
        for _ in range(3):
            bouncer = cls(server, free_port(), users)
            try:
                return bouncer.start()
            except RuntimeError:
                bouncer.stop()
        return cls(server, free_port(), users).start()

    def stop(self) -> None:
        pidfile = self.base_dir / "pgbouncer.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text().strip()), 15)
            pidfile.unlink(missing_ok=True)


def checkout_port(base: int, span: int) -> int:
    """A port of its own for this checkout, so two clones' servers never meet on one fixed port."""
    return base + int(hashlib.sha256(str(REPO).encode()).hexdigest()[:8], 16) % span


def test_server() -> LocalServer:
    """The server the tests (and the reference generator) use: a port per checkout, PGALERT_TEST_PORT to choose."""
    return LocalServer("test", int(os.environ.get("PGALERT_TEST_PORT", checkout_port(55500, 400))))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop", "restart", "destroy", "url", "status"])
    parser.add_argument("--name", default="demo", help="cluster name (demo, test, bench)")
    parser.add_argument("--port", type=int, default=55432)
    args = parser.parse_args(argv)
    server = LocalServer(args.name, args.port)
    if args.action == "start":
        server.start()
        print(server.url())
    elif args.action == "url":
        print(server.url())
    elif args.action == "status":
        print("running" if server.is_running() else "stopped")
    else:
        getattr(server, args.action)()
    return 0


if __name__ == "__main__":
    sys.exit(main())
