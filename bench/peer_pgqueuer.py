"""pgqueuer doing pgalert's job, for the hot-path benchmark: one worker whose handler POSTs each job's payload to
the receiver on one kept-alive connection (asyncio streams, TCP_NODELAY), so it pays for the send no more than
pgalert's libcurl does. Needs the optional extra: pip install -e '.[bench]'.

    python -m bench.peer_pgqueuer DATABASE_URL --install      # pgqueuer's tables in that database
    python -m bench.peer_pgqueuer DATABASE_URL RECEIVER_URL   # work until SIGINT
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from urllib.parse import urlsplit

import psycopg
from pgqueuer.db import PsycopgDriver
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries


class KeepAlivePoster:
    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()  # one connection, one request at a time, as pgalert's floor does

    async def post(self, body: bytes) -> None:
        async with self.lock:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                              b"Content-Length: %d\r\n\r\n%s"
                              % (self.path.encode(), self.host.encode(), len(body), body))
            await self.writer.drain()
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            await self.reader.readexactly(length)


async def install(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await Queries(PsycopgDriver(conn)).install()


async def work(url: str, receiver: str) -> None:
    poster = KeepAlivePoster(receiver)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        manager = QueueManager(Queries(PsycopgDriver(conn)))

        @manager.entrypoint("page")
        async def page(job: Job) -> None:
            await poster.post(job.payload or b"{}")

        await manager.run(batch_size=100)


if __name__ == "__main__":
    if sys.argv[2:] == ["--install"]:
        asyncio.run(install(sys.argv[1]))
    else:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(work(sys.argv[1], sys.argv[2]))
