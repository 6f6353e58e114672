"""Rewinding a partition that stopped moving while it has records to read.

A partition with lag whose position has not moved for `STALL_AFTER` while the worker's
writes succeed is not waiting for MongoDB: faust has stopped handing its records over.
Seen under CPU load after quick successive rebalances (about one run of the SIGKILL
scenario in three under `stress --cpu 2`): the delivery of a record abandoned by one
rebalance leaves faust's read offset for the partition past what the next assignment
refetches, and faust drops the refetched records as already read. They are never acked,
so the commit holds (no record is lost) but nothing moves until the worker restarts.

Before seeking, it asks whether the partition waits at a stretch without records (a
transaction marker at the end of the partition, say): then it is marked done and
there is nothing to rewind. Otherwise `Rewinder` seeks the partition back to where it is
durable without a hole (what the worker commits), through faust's `Consumer.seek_wait`
(in its consumer thread). faust's seek resets the read offset as well, so the records
are fetched and handed over again; the ones already stored are repeats, which change
nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dialogue_worker.adapters.commits import seek_back
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.health import StuckPartition, WorkerHealth
from platform_common.logs import partition_fields

log = logging.getLogger(__name__)


class Rewinder:
    def __init__(
        self,
        app: Any,
        health: WorkerHealth,
        metrics: WorkerMetrics,
        *,
        every: float,
        mend: Callable[[tuple[str, int], int], Awaitable[bool]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._app = app
        self._health = health
        self._metrics = metrics
        self._every = every  # at most one rewind of a partition per this many seconds
        self._mend = mend  # (partition, end) -> True if it was an empty stretch, skipped
        self._clock = clock
        self._last: dict[tuple[str, int], float] = {}

    async def run_once(self) -> list[StuckPartition]:
        """Rewind every stuck partition not rewound in the last `every` seconds."""
        if self._health.failure is not None:
            return []  # writes are failing: the partitions wait for the store, rightly
        now = self._clock()
        done = []
        for stuck in self._health.stuck():
            key = (stuck.topic, stuck.partition)
            if now - self._last.get(key, -self._every) < self._every:
                continue
            self._last[key] = now
            where = partition_fields(stuck.topic, stuck.partition, stuck.offset)
            try:
                if await self._mend(key, stuck.offset + stuck.lag):
                    continue
            except Exception as exc:  # Kafka did not say: seeking back is safe either way
                log.warning(
                    "could not look for records after stuck offset %d: %s",
                    stuck.offset,
                    exc,
                    extra=where,
                )
            try:
                await seek_back(self._app, key, stuck.offset)
            except Exception as exc:  # e.g. revoked mid-seek: tried again next period
                log.warning("could not seek back to %d: %s", stuck.offset, exc, extra=where)
                continue
            self._metrics.rewound.inc()
            log.warning(
                "rewound a stuck partition to offset %d (lag %d, no progress for %.0fs)",
                stuck.offset,
                stuck.lag,
                stuck.seconds,
                extra=where,
            )
            done.append(stuck)
        return done
