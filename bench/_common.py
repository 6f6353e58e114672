"""What the benchmarks share: a percentile, a deadline for polls that wait on another
process, and the clean-up of what a benchmark's workers leave in Kafka and MongoDB."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from infra.local import LocalSettings
from infra.processes.worker import WorkerProcess

#: Seconds a poll may see no progress before the benchmark gives up.
STALLED_AFTER = 120.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) by nearest rank: the value at round(q * (n - 1)) of the
    sorted values, no interpolation (so p99 of fewer than 100 values is near the maximum)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Stalled(RuntimeError):
    """A polled count stopped growing; the message says how far it got."""


class StallWatch:
    """Fed each reading of a count that should reach `total`; raises Stalled once it has
    not grown for `after` seconds."""

    def __init__(self, what: str, total: int, after: float = STALLED_AFTER) -> None:
        self.what = what
        self.total = total
        self.after = after
        self._last: int | None = None
        self._moved = time.monotonic()

    def check(self, count: int) -> None:
        if self._last is None or count > self._last:
            self._last, self._moved = count, time.monotonic()
        elif time.monotonic() - self._moved > self.after:
            raise Stalled(f"{count} of {self.total} {self.what}, none more for {self.after:g} s")


async def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix` (a run's own names); those deleted."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if ours:
            await admin.delete_topics(ours)
        return ours
    finally:
        await admin.close()


async def drop_database(mongo_url: str, name: str) -> None:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url)
    try:
        await mongo.drop_database(name)
    finally:
        await mongo.close()


async def forget_worker(infra: LocalSettings, worker: WorkerProcess) -> None:
    """Drop the database of a benchmark's worker group and delete its topics (messages,
    .dlq, .events and faust's own: every name that starts with the group's app id)."""
    try:
        await drop_database(infra.mongo_url, worker.mongo_db)
    finally:
        await delete_topics(infra.kafka_bootstrap, worker.app_id)
