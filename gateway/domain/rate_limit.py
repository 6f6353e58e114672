"""Token buckets: a rate ("N/S": N requests per S seconds, bursts of N) per key."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

#: The largest N a rate may name.
CAPACITY_MAX = 10**9


@dataclass(frozen=True)
class Rate:
    """`capacity` requests per `period` seconds; a full bucket allows a burst of `capacity`.

    A capacity of 0 means unlimited.
    """

    capacity: int
    period: float

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Read "20/60" (20 per minute), or "off" for no limit."""
        value = text.strip().lower()
        if value in ("off", "0"):
            return cls(0, 1.0)
        count, sep, period = value.partition("/")
        try:
            rate = cls(int(count), float(period)) if sep else None
        except ValueError:
            rate = None
        # N bounded: a capacity of hundreds of digits passed, then overflowed a float when
        # the buckets were built, a traceback at start (found in review).
        if rate is None or not 1 <= rate.capacity <= CAPACITY_MAX or not 0 < rate.period < math.inf:
            raise ValueError(
                f'a rate is "N/SECONDS" with N 1-{CAPACITY_MAX:,} (e.g. "20/60"), or "off"'
                f' (or "0"): {text!r}'
            )
        return rate

    @property
    def unlimited(self) -> bool:
        return self.capacity == 0

    def __str__(self) -> str:
        return "off" if self.unlimited else f"{self.capacity}/{self.period:g}"


class TokenBuckets:
    """One bucket per key, at most `max_keys` of them (the least recently used go first;
    a key that comes back starts full)."""

    def __init__(self, rate: Rate, max_keys: int = 100_000) -> None:
        self.rate = rate
        self._per_second = rate.capacity / rate.period
        self._max = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _level(self, key: str, now: float) -> float:
        tokens, at = self._buckets.get(key, (float(self.rate.capacity), now))
        return min(float(self.rate.capacity), tokens + max(0.0, now - at) * self._per_second)

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` has a token (0.0: it has one now); takes nothing."""
        if self.rate.unlimited:
            return 0.0
        missing = 1.0 - self._level(key, now)
        return missing / self._per_second if missing > 0 else 0.0

    def take(self, key: str, now: float) -> None:
        """Spend one token of `key` (callers check `wait` first)."""
        if self.rate.unlimited:
            return
        self._buckets[key] = (self._level(key, now) - 1.0, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
