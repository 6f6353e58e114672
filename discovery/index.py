"""Consul's rules for a blocking-query loop, without I/O.

See https://developer.hashicorp.com/consul/api-docs/features/blocking
("Implementation details"): reset an index that goes backwards, keep it >= 1,
and rate-limit the loop so a result that changes constantly cannot busy-loop.
"""

from __future__ import annotations

from collections.abc import Callable


def next_index(previous: int, returned: int) -> int:
    """The index for the next query after a response carrying `returned`.

    0 means "reset": the next query does not block, so nothing is missed.
    """
    if returned < previous:
        return 0
    return max(returned, 1)


class Pacer:
    """Spaces query starts at least `min_interval` apart."""

    def __init__(self, min_interval: float, clock: Callable[[], float]) -> None:
        self.min_interval = min_interval
        self._clock = clock
        self._last: float | None = None

    def delay(self) -> float:
        """Seconds to wait before the next query may start."""
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.min_interval - self._clock())

    def started(self) -> None:
        """Record that a query starts now."""
        self._last = self._clock()
