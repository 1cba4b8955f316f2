"""What keeps open console pages live: one connection per serve process LISTENs (NOTIFY is only a wake-up) and,
while a page is open, reads the console's version of the tables once a second, sooner when woken, but never more
often than MIN_READ_SECONDS apart: any login may NOTIFY the channel, so a flood of them costs one read per
interval, not one each. When the version changes, every open page is told through its Server-Sent Events stream
and fetches what it shows again. The tables are the truth: a page that reconnects after a blip compares the
version it saw with the current one, so it misses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time

import psycopg

from dispatcher import logs
from dispatcher.db import named_queries

POLL_SECONDS = 1.0  # not every change NOTIFYs (an acknowledgement does not): the version is read this often
MIN_READ_SECONDS = 0.25  # and a NOTIFY makes it read sooner, but never sooner than this after the last read


class Feed:
    def __init__(self, database_url: str, queries_file, poll_seconds: float = POLL_SECONDS,
                 min_read_seconds: float = MIN_READ_SECONDS):
        self._url = database_url
        self._queries = named_queries(queries_file)
        self._poll = poll_seconds
        self._min_read = min_read_seconds
        self.version: str | None = None
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task | None = None
        self._changed = asyncio.Event()
        self.reads = 0  # times the version was read, and NOTIFYs heard: what a flood costs, for tests and health
        self.wakeups = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="console feed")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def subscribe(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)  # a page needs only the latest version
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._subscribers.discard(queue)

    @property
    def pages(self) -> int:
        return len(self._subscribers)

    def _publish(self, version: str) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(version)

    async def _wait(self, conn: psycopg.AsyncConnection) -> None:
        """Until the next read is due: the poll interval after the last read, or a NOTIFY, but never less than the
        least interval. NOTIFYs heard within the least interval are kept as one wake-up, so none is lost and a
        flood of them is one read."""
        started = time.monotonic()
        woken = False
        # psycopg's deadline is checked only between waits: a steady flood would keep it yielding for ever
        async with contextlib.aclosing(conn.notifies(timeout=self._min_read)) as heard:
            async for _ in heard:
                self.wakeups += 1
                woken = True
                if time.monotonic() - started >= self._min_read:
                    break
        if not woken:
            async for _ in conn.notifies(timeout=max(0.0, self._poll - (time.monotonic() - started)), stop_after=1):
                self.wakeups += 1

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self._url, autocommit=True, application_name="pgalert serve console feed") as conn:
                    await conn.execute(self._queries["listen"])
                    delay = 0.5
                    while True:
                        # with no page open there is nobody to tell: the version is read again when one is
                        if self._subscribers or self.version is None:
                            row = await (await conn.execute(self._queries["version"])).fetchone()
                            self.reads += 1
                            if row[0] != self.version:
                                self.version = row[0]
                                self._publish(row[0])
                        await self._wait(conn)
            except asyncio.CancelledError:
                raise
            except psycopg.errors.InsufficientPrivilege as error:
                logs.error("the console cannot read the alerts: serve's login needs monitoring_console "
                           "(or run with --no-console)", error=str(error).strip()[:200])
                await asyncio.sleep(60)
            except psycopg.Error as error:
                logs.warning("console feed disconnected", error=str(error).strip()[:300], retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
