"""Reconnect delays, shared by every loop of the dispatcher that talks to PostgreSQL."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    """Reconnect delays: jittered, doubling from 0.1 s to 30 s."""

    first: float = 0.1
    cap: float = 30.0
    current: float = 0.0

    def next(self) -> float:
        self.current = min(self.cap, self.current * 2 if self.current else self.first)
        return random.uniform(self.current / 2, self.current)

    def reset(self) -> None:
        self.current = 0.0
