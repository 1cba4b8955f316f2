"""When to try again: exponential backoff with equal jitter, never sooner than the provider asked.

Equal jitter (a delay drawn between half and all of the doubled ceiling), not full jitter (between zero and the
ceiling): retries still spread out across dispatchers, and a provider that is failing is never retried at
once by chance, which full jitter allows at every step."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 10
    base_seconds: float = 1.0
    cap_seconds: float = 300.0

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** max(attempt - 1, 0))
        jittered = (rng or random).uniform(ceiling / 2, ceiling)
        return max(jittered, retry_after or 0.0)

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
