"""Whether this worker is fit to serve: MongoDB reachable, writes succeeding, partitions moving."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from dialogue_worker.errors import StorageUnavailable

#: How long a health ping may take: the ping bounds itself by this (MongoDatabase.ping).
PING_TIMEOUT = 2.0
#: The backstop for a ping that does not bound itself: cancelled after this much more.
PING_GRACE = 1.0
#: Stuck partitions named in a health reason at most (the metric counts them all).
REASON_PARTITIONS = 3
TopicPartition = tuple[str, int]


class Status(StrEnum):
    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class HealthState:
    status: Status
    reason: str | None = None


@dataclass(frozen=True)
class PartitionState:
    lag: int  # records in the partition not yet persisted
    position: int  # the next offset to persist


@dataclass(frozen=True)
class StuckPartition:
    topic: str
    partition: int
    offset: int
    lag: int
    seconds: float

    def describe(self) -> str:
        return (
            f"{self.topic}/{self.partition} at offset {self.offset} "
            f"for {self.seconds:.0f}s (lag {self.lag})"
        )


PASSING = HealthState(Status.PASSING)


class WorkerHealth:
    """Collects what the agent reports and checks MongoDB on demand.

    critical: MongoDB does not answer a ping, or the last batch write is failing.
    warning:  a partition has records waiting (lag > 0) and its position has not moved
              for `stall_after` seconds; the reason names the partition and offset.
    passing, with a reason: a batch waits for Kafka (events, forwards, dead letters
              cannot be sent). Reads need only MongoDB: the worker stays in the
              gateways' read set, and its partitions wait for Kafka, not stuck.
    """

    def __init__(
        self,
        ping: Callable[[], Awaitable[None]],
        partitions: Callable[[], Mapping[TopicPartition, PartitionState]],
        *,
        stall_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ping = ping
        self._partitions = partitions
        self._stall_after = stall_after
        self._clock = clock
        self._failure: str | None = None
        self._reads_fail = False  # whether the failure is the store's (reads fail too)
        self._waiting_since: dict[TopicPartition, tuple[int, float]] = {}
        self._last: tuple[float, HealthState] | None = None
        self._pinging: asyncio.Future[None] | None = None

    @property
    def failure(self) -> str | None:
        """Why the last batch step is failing (None while it succeeds)."""
        return self._failure

    def failing(self, reason: str, *, reads_fail: bool = True) -> None:
        """The agent cannot complete a batch right now; `reads_fail` when the cause (the
        store) fails this worker's reads too."""
        self._failure = reason
        self._reads_fail = reads_fail

    def progressed(self) -> None:
        """The agent completed a batch."""
        self._failure = None

    def stuck(self) -> list[StuckPartition]:
        """Partitions with lag whose position has not moved for `stall_after` seconds."""
        now = self._clock()
        states = self._partitions()
        waiting: dict[TopicPartition, tuple[int, float]] = {}
        for tp, state in states.items():
            if state.lag > 0:
                seen = self._waiting_since.get(tp)
                same = seen is not None and seen[0] == state.position
                waiting[tp] = seen if same and seen is not None else (state.position, now)
        self._waiting_since = waiting
        return [
            StuckPartition(tp[0], tp[1], position, states[tp].lag, now - since)
            for tp, (position, since) in sorted(waiting.items())
            if now - since > self._stall_after
        ]

    async def check(self) -> HealthState:
        state = await self._evaluate()
        self._last = (self._clock(), state)
        return state

    async def recent(self, max_age: float = 1.0) -> HealthState:
        """The last check if younger than max_age seconds, else a new one."""
        if self._last is not None and self._clock() - self._last[0] <= max_age:
            return self._last[1]
        return await self.check()

    async def _ping_shielded(self) -> None:
        """One ping at a time, in a task of its own that callers' time-outs never cancel.

        A check is cancelled from outside (the registry's heartbeat gives it one second).
        pymongo's async client must not be cancelled in server selection: on Python 3.11
        a cancel that lands while its own wait times out leaves the topology's lock held
        by nobody's task, and every later operation of that client hangs (seen in the
        MongoDB fault test: "RuntimeError: Lock is not acquired", then no write for
        minutes). The ping bounds itself instead (MongoDatabase.ping's timeout).

        The task starts in a context of its own: one copied from the caller would carry
        the caller's `pymongo.timeout` (a read's X-Timeout-Ms, for `/ping` through the
        gateway), which MongoDatabase.ping's own can only shorten, and every check that
        shares this ping would report that caller's hurry as MongoDB unreachable."""
        if self._pinging is None or self._pinging.done():
            # The task copies the context it is made in: made in an empty one.
            self._pinging = contextvars.Context().run(asyncio.ensure_future, self._ping())
            self._pinging.add_done_callback(_retrieved)
        await asyncio.shield(self._pinging)

    async def _evaluate(self) -> HealthState:
        if self._failure is not None and self._reads_fail:
            return HealthState(Status.CRITICAL, self._failure)
        try:
            await asyncio.wait_for(self._ping_shielded(), PING_TIMEOUT + PING_GRACE)
        except (StorageUnavailable, TimeoutError) as exc:
            return HealthState(Status.CRITICAL, f"mongodb unreachable: {exc or 'ping timed out'}")
        if self._failure is not None:  # Kafka: reads are served, the partitions wait for it
            return HealthState(Status.PASSING, f"reads served; writes wait: {self._failure}")
        stuck = self.stuck()
        if stuck:
            named = "; ".join(s.describe() for s in stuck[:REASON_PARTITIONS])
            more = f" and {len(stuck) - REASON_PARTITIONS} more" if len(stuck) > 3 else ""
            return HealthState(Status.WARNING, f"partition stuck: {named}{more}")
        return PASSING


def _retrieved(task: asyncio.Future[None]) -> None:
    """Mark a ping's outcome as seen (the check that awaited it may have timed out)."""
    if not task.cancelled():
        task.exception()
