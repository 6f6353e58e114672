"""Exponential backoff with jitter, for retrying an unreachable Consul."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays that double from `initial` up to `maximum`, each scaled by a random
    factor in [1 - jitter, 1] so many clients do not retry in lock-step."""

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 5.0,
        *,
        jitter: float = 0.5,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < initial <= maximum:
            raise ValueError("need 0 < initial <= maximum")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rand = rand
        self._failures = 0

    @property
    def failures(self) -> int:
        """Consecutive failures since the last reset."""
        return self._failures

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before the next try."""
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self._failures, 60))
        self._failures += 1
        return ceiling * (1.0 - self.jitter * self._rand())

    def reset(self) -> None:
        self._failures = 0
