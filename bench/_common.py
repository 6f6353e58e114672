"""What the benchmarks share: a percentile, a deadline for polls that wait on another
process, and the clean-up of what a benchmark's workers leave in Kafka and MongoDB."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from pymongo import AsyncMongoClient

from infra.local import LocalSettings
from infra.processes.gateway import GatewayProcess, gateway_env, mysql_execute
from infra.processes.private import private_consul
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


@dataclass(frozen=True)
class Platform:
    """A benchmark's own gateway and two workers (`first` and its sibling)."""

    run: str  # the run's id, in every name it made
    gateway: GatewayProcess
    workers: tuple[WorkerProcess, WorkerProcess]

    @property
    def first(self) -> WorkerProcess:
        return self.workers[0]


@contextlib.asynccontextmanager
async def private_platform(
    infra: LocalSettings, name: str, gateway_settings: Mapping[str, str] | None = None
) -> AsyncIterator[Platform]:
    """A gateway and two workers over a private Consul agent, with their own MySQL
    database (gw_<name>_<run>), topics and MongoDB database, all removed afterwards."""
    run = uuid.uuid4().hex[:8]
    counter = iter(range(1, 1000))

    def unique(prefix: str) -> str:
        return f"{prefix}-{run}-{next(counter)}"

    database = f"gw_{name}_{run}"  # gw_*: a name the project's MySQL user may create
    await mysql_execute(infra, f"CREATE DATABASE `{database}`")
    try:
        with (
            tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp,
            private_consul(Path(tmp), infra.cache_dir) as consul,
        ):
            consul_url = consul.settings.consul_url
            first = WorkerProcess.for_test(infra, unique, consul_url=consul_url)
            workers = (first, first.sibling(unique("worker")))
            env = gateway_env(infra, database, first, consul_url) | dict(gateway_settings or {})
            gateway = GatewayProcess(env)
            try:
                for worker in workers:
                    worker.start()
                await asyncio.gather(*(w.wait_ready(90) for w in workers))
                await gateway.start().wait_ready()
                yield Platform(run, gateway, workers)
            finally:
                await gateway.stop()
                await asyncio.gather(*(w.terminate() for w in workers), return_exceptions=True)
                await forget_worker(infra, first)
    finally:
        await mysql_execute(infra, f"DROP DATABASE `{database}`")
