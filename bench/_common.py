"""What the benchmarks share: a percentile, a deadline for polls that wait on another
process, and the clean-up of what a benchmark's workers leave in Kafka and MongoDB."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
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
from platform_common.addresses import consul_address
from platform_common.local import is_loopback

#: Seconds a poll may see no progress before the benchmark gives up.
STALLED_AFTER = 120.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) by nearest rank: the ceil(q * n)-th smallest value, no
    interpolation (so p99 of fewer than 100 values is the maximum). Until 2026-12-07 the
    value at round(q * (n - 1)), which rounds half to even: p50 of an even count took the
    upper or the lower middle by turns (found in review). For the 200 and 300 samples the
    figures in docs/ were taken with, both rules pick the same p90, p95 and p99; their
    p50 was the upper middle, now the lower (one sample apart)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = math.ceil(q * len(ordered) - 1e-9)  # 0.99 * 200 is 198.00000000000003
    return ordered[min(len(ordered), max(1, rank)) - 1]


def loopback_consul(raw: str) -> str:
    """An argparse `type`: a Consul agent's URL on this machine only (load and fault
    tools target 127.0.0.1: found in review, --consul took any host)."""
    try:
        _, host, _ = consul_address(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not is_loopback(host):
        raise argparse.ArgumentTypeError(f"{host!r} is not a loopback address: benchmarks run here")
    return raw


def number(
    kind: type[int] | type[float], minimum: float, *, above: bool = False, why: str = ""
) -> Any:
    """An argparse `type`: a finite `kind` at least `minimum` (above it, with `above`). A
    count of 0 used to run the whole benchmark and fail at its end (no values, a division);
    an infinite one never ends. `why`, when given, follows the bound in its refusal."""
    bound = f"> {minimum:g}" if above else f">= {minimum:g}"
    reason = f": {why}" if why else ""

    def parse(raw: str) -> int | float:
        try:
            value = kind(raw)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{raw!r} is not {what}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {raw}")
        if not (value > minimum if above else value >= minimum):
            raise argparse.ArgumentTypeError(f"must be {bound}, got {raw}{reason}")
        return value

    return parse


def counts(raw: str) -> list[int]:
    """An argparse `type`: comma-separated counts, each >= 1 ("1,2,3")."""
    parse = number(int, 1)
    try:
        return [parse(part.strip()) for part in raw.split(",")]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{raw!r}: {exc}") from None


class LoopLag:
    """How late this process's event loop wakes a sleeper every `every` seconds. A load
    client that falls behind makes the platform look slow, so a bench reports its own lag:
    the worst since the last `take_worst()`, and every sample when `keep` is set."""

    def __init__(self, every: float, *, keep: bool = False) -> None:
        self.every = every
        self.lags: list[float] = []
        self._keep = keep
        self._worst = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def take_worst(self) -> float:
        """The worst lag since the last call (0.0 when nothing was sampled)."""
        worst, self._worst = self._worst, 0.0
        return worst

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.every)
            late = time.perf_counter() - before - self.every
            self._worst = max(self._worst, late)
            if self._keep:
                self.lags.append(late)


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


async def _terminate_all(workers: Sequence[WorkerProcess]) -> None:
    """SIGTERM every worker at once, wait for each, then raise the first failure."""
    results = await asyncio.gather(*(w.terminate() for w in workers), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


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
    # Every clean-up step runs, in reverse order, even when one before it fails.
    async with contextlib.AsyncExitStack() as cleanup:
        await mysql_execute(infra, f"CREATE DATABASE `{database}`")
        cleanup.push_async_callback(mysql_execute, infra, f"DROP DATABASE `{database}`")
        tmp = cleanup.enter_context(tempfile.TemporaryDirectory(prefix=f"{name}-"))
        consul = cleanup.enter_context(private_consul(Path(tmp), infra.cache_dir))
        consul_url = consul.settings.consul_url
        first = WorkerProcess.for_test(infra, unique, consul_url=consul_url)
        workers = (first, first.sibling(unique("worker")))
        cleanup.push_async_callback(forget_worker, infra, first)
        cleanup.push_async_callback(_terminate_all, workers)
        for worker in workers:
            worker.start()
        await asyncio.gather(*(w.wait_ready(90) for w in workers))
        env = gateway_env(infra, database, first, consul_url) | dict(gateway_settings or {})
        gateway = GatewayProcess(env)
        cleanup.push_async_callback(gateway.stop)
        await gateway.start().wait_ready()
        yield Platform(run, gateway, workers)
