"""Asking Twilio what became of texts and calls whose final status never came: a status callback can be lost
(Twilio never retries one; `pgalert serve` may be down or have no public URL), and a message that silently did
not arrive must still hand over to the person's next rule (sql/paging.sql). Which messages, and how often, the
database says (monitoring_messages_to_poll); the fetches go through the dispatcher's HTTP loop."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping

from dispatcher import db, logs
from dispatcher.providers import twilio
from dispatcher.providers.base import HttpResponse, Provider
from dispatcher.worker.connector import Connector, repeat_on_a_session
from dispatcher.worker.sending import Client

POLL_SECONDS = 30.0  # a lost callback costs the database's poll delay (2 minutes) and at most this much more
POLL_MAX = 50


def poll_statuses_forever(connector: Connector, client: Client, providers: Callable[[], Mapping[str, Provider]],
                          reply_seconds: float, stopping: threading.Event,
                          clean: Callable[[str | None], str | None]) -> None:
    repeat_on_a_session(connector, "statuses", lambda queries: poll_once(queries, client, providers(), reply_seconds),
                        POLL_SECONDS, stopping, clean, "polling message statuses paused")


def poll_once(queries: db.DispatcherQueries, client: Client, providers: Mapping[str, Provider],
              reply_seconds: float) -> int:
    """Fetch every message the database names from its Twilio channel and record what Twilio says of it; a fetch
    that fails is asked again at the next poll. Returns how many statuses were recorded."""
    asked: list[tuple[str, object]] = []
    for _delivery_id, channel, kind, reference in queries.messages_to_poll(POLL_MAX):
        provider = providers.get(channel)
        request = provider.status_request(kind, reference) if isinstance(provider, twilio.Twilio) else None
        if request is not None:
            asked.append((reference, request))
    replies: queue.Queue[tuple[str, object]] = queue.Queue()
    for reference, request in asked:
        client.submit(request, lambda reply, _seconds, reference=reference: replies.put((reference, reply)))
    recorded = 0
    deadline = time.monotonic() + reply_seconds
    for _ in asked:
        try:
            reference, reply = replies.get(timeout=max(deadline - time.monotonic(), 0.0))
        except queue.Empty:
            break
        heard = twilio.status_of(reply) if isinstance(reply, HttpResponse) else None
        if heard is None:
            continue
        outcome = queries.message_polled(reference, *heard)
        recorded += 1
        if outcome == "failed":
            logs.info("page not reached: next method", via="twilio poll", status=heard[0])
    return recorded
