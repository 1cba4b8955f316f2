"""How fast each channel may be sent to: what the claim reserves, and what a claimed batch becomes (requests now,
deliveries deferred to a later slot). Pure but for the slot reservation it is handed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from dispatcher.providers.base import Delivery, Provider, Unconfigured
from dispatcher.settings import Pace

# (channel, count, interval, burst) -> (slots granted, seconds until the next slot)
Reserve = Callable[[str, int, float, int], tuple[int, float]]


@dataclass
class Plan:
    """What to send now, one list per request, and what to defer, with the seconds to wait."""

    requests: list[list[Delivery]] = field(default_factory=list)
    deferred: list[tuple[Delivery, float]] = field(default_factory=list)


def pace_of(paces: Mapping[str, Pace], kinds: Mapping[str, str], channel: str) -> Pace | None:
    """A channel is paced as its kind unless --pacing names it; each channel keeps its own pace and pauses."""
    return paces.get(channel) or paces.get(kinds.get(channel, channel))


def paces_for_the_claim(paces: Mapping[str, Pace], providers: Mapping[str, Provider],
                        kinds: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """The paced channels whose slots the claim reserves, so their sends cost one round trip: all but those
    that fold what exceeds their pace into a digest (Slack), which plan() does after the claim."""
    claimed = {}
    for channel, sender in providers.items():
        pace = pace_of(paces, kinds, channel)
        if pace and not isinstance(sender, Unconfigured) and sender.digest_max <= 1:
            claimed[channel] = {"interval": pace.interval, "burst": pace.burst}
    return claimed


def plan(channel: str, batch: list[Delivery], pace: Pace | None, sender: Provider | None, paced_by_claim: bool,
         reserve: Reserve) -> Plan:
    """What to send now; what the pace does not allow now is deferred, never dropped.

    A provider that can send a digest (Slack) folds what exceeds its pace into the last granted message,
    and defers the rest together to its next slot, where they make the next digest."""
    if not pace or sender is None or isinstance(sender, Unconfigured) or paced_by_claim:
        return Plan([[delivery] for delivery in batch])
    granted, wait = reserve(channel, len(batch), pace.interval, pace.burst)
    digest_max = sender.digest_max
    if granted >= len(batch) or digest_max <= 1:
        return Plan([[delivery] for delivery in batch[:granted]],
                    [(delivery, wait + position * pace.interval) for position, delivery in enumerate(batch[granted:])])
    if not granted:
        return Plan([], [(delivery, wait) for delivery in batch])
    singles, rest = batch[:granted - 1], batch[granted - 1:]
    return Plan([*([delivery] for delivery in singles), rest[:digest_max]],
                [(delivery, wait) for delivery in rest[digest_max:]])
