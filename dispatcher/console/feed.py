"""What keeps open console pages live: one connection per serve process LISTENs (NOTIFY is only a wake-up) and
reads the console's version of the tables at most once a second; when it changes, every open page is told
through its Server-Sent Events stream and fetches what it shows again. The tables are the truth: a page that
reconnects after a blip compares the version it saw with the current one, so it misses nothing."""

from __future__ import annotations

import asyncio
import contextlib

import psycopg

from dispatcher import logs
from dispatcher.db import named_queries

POLL_SECONDS = 1.0


class Feed:
    def __init__(self, database_url: str, queries_file, poll_seconds: float = POLL_SECONDS):
        self._url = database_url
        self._queries = named_queries(queries_file)
        self._poll = poll_seconds
        self.version: str | None = None
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task | None = None
        self._changed = asyncio.Event()

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
                            if row[0] != self.version:
                                self.version = row[0]
                                self._publish(row[0])
                        # a NOTIFY wakes us at once; without one, look again after the poll interval
                        with contextlib.suppress(TimeoutError):
                            async for _ in conn.notifies(timeout=self._poll, stop_after=1):
                                pass
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
