"""The console's feed (dispatcher/console/feed.py) against the real server: any login may NOTIFY the channel it
listens on, so what a NOTIFY costs is bounded by the feed, never by whoever sends them. The feed's counters of
version reads and NOTIFYs heard are the measure; no assertion depends on how fast this machine is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg

from dispatcher.console.app import QUERIES_FILE
from dispatcher.console.feed import Feed

CEILING = 30.0  # s a condition may take: a ceiling, never a measure


def run(scenario) -> None:
    """asyncio.run on a thread of its own: Playwright's sync API (the browser tests) keeps a loop running in this
    one when they share a worker."""
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, scenario).result()


async def until(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + CEILING
    while not check():
        assert time.monotonic() < deadline, f"{what}: not within {CEILING}s"
        await asyncio.sleep(0.02)


async def flood(url: str) -> int:
    """A writer app NOTIFYing the feed's channel every way it can: bare, with payloads, one per transaction and
    hundreds in one transaction (distinct payloads are not folded into one). Returns how many it sent."""
    sent = 0
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as writer:
        for n in range(150):
            await writer.execute("NOTIFY monitoring_deliveries" if n % 2 else "NOTIFY monitoring_deliveries, 'x'")
            sent += 1
        async with writer.transaction():
            for n in range(150):
                await writer.execute("SELECT pg_notify('monitoring_deliveries', %s)", (f"flood {n}",))
                sent += 1
        for _ in range(100):
            await writer.execute("SELECT pg_notify('monitoring_deliveries', %s)", ("y" * 7000,))
            sent += 1
    return sent


def test_a_notify_flood_from_a_writer_never_makes_the_feed_read_again_before_its_interval(login_url):
    serve_url, writer_url = login_url("monitoring_inbound", "monitoring_console"), login_url("monitoring_writer")

    async def scenario() -> None:
        # an interval longer than the test: after its first read the feed may not read again, however woken
        feed = Feed(serve_url, QUERIES_FILE, poll_seconds=3600, min_read_seconds=3600)
        feed.start()
        try:
            feed.subscribe()  # a page is open: the feed is reading for someone
            await until(lambda: feed.reads == 1, "the first read")
            sent = await flood(writer_url)
            await until(lambda: feed.wakeups >= sent, f"the feed hearing all {sent} NOTIFYs")
            assert feed.reads == 1, f"{sent} NOTIFYs made {feed.reads} reads"
        finally:
            await feed.stop()

    run(scenario())


def test_a_change_woken_by_notify_during_the_quiet_interval_is_still_shown(conn, login_url):
    serve_url = login_url("monitoring_inbound", "monitoring_console")

    async def scenario() -> None:
        # no poll within the test: only the NOTIFY, heard while reads are held back, can bring the change
        feed = Feed(serve_url, QUERIES_FILE, poll_seconds=3600, min_read_seconds=0.5)
        feed.start()
        try:
            page = feed.subscribe()
            await until(lambda: feed.reads == 1, "the first read")
            seen = await page.get()
            conn.execute("INSERT INTO monitoring_alerts (alert_type, severity, title, message) "
                         "VALUES ('disk_full', 'critical', 'Disk full', '')")
            conn.execute("NOTIFY monitoring_deliveries")
            version = await asyncio.wait_for(page.get(), CEILING)
            assert version != seen and version == feed.version
        finally:
            await feed.stop()

    run(scenario())
