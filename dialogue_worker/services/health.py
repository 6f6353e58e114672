"""Whether this worker is fit to serve: MongoDB reachable, writes succeeding, consumer moving."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from dialogue_worker.errors import StorageUnavailable

PING_TIMEOUT = 2.0


class Status(StrEnum):
    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class HealthState:
    status: Status
    reason: str | None = None


PASSING = HealthState(Status.PASSING)


class WorkerHealth:
    """Collects what the agent reports and checks MongoDB on demand.

    critical: MongoDB does not answer a ping, or the last batch write is failing.
    warning:  records are waiting (lag > 0) but no batch finished for `stall_after` s.
    """

    def __init__(
        self,
        ping: Callable[[], Awaitable[None]],
        lag: Callable[[], int | None],
        *,
        stall_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ping = ping
        self._lag = lag
        self._stall_after = stall_after
        self._clock = clock
        self._last_progress = clock()
        self._failure: str | None = None
        self._last: tuple[float, HealthState] | None = None

    def failing(self, reason: str) -> None:
        """The agent cannot complete a batch right now."""
        self._failure = reason

    def progressed(self) -> None:
        """The agent completed a batch."""
        self._failure = None
        self._last_progress = self._clock()

    async def check(self) -> HealthState:
        state = await self._evaluate()
        self._last = (self._clock(), state)
        return state

    async def recent(self, max_age: float = 1.0) -> HealthState:
        """The last check if younger than max_age seconds, else a new one."""
        if self._last is not None and self._clock() - self._last[0] <= max_age:
            return self._last[1]
        return await self.check()

    async def _evaluate(self) -> HealthState:
        if self._failure is not None:
            return HealthState(Status.CRITICAL, self._failure)
        try:
            await asyncio.wait_for(self._ping(), PING_TIMEOUT)
        except (StorageUnavailable, TimeoutError) as exc:
            return HealthState(Status.CRITICAL, f"mongodb unreachable: {exc or 'ping timed out'}")
        idle = self._clock() - self._last_progress
        lag = self._lag()
        if lag and idle > self._stall_after:
            return HealthState(
                Status.WARNING, f"consumer stalled: lag {lag}, no batch for {idle:.0f}s"
            )
        return PASSING
