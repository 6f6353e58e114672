"""One sample every interval: memory, CPU and sockets of the processes, the consumer
group's lag per partition, the gateway's open streams, and what the load processes
measured since the previous sample."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

from bench.soak import procfs
from bench.soak.channel import LoadProcess
from bench.soak.platform import Target
from bench.soak.stats import IntervalStats, is_server_error
from infra.processes.worker import metric_sum
from platform_common.local import LOCAL_ADMIN_TOKEN


@dataclass
class Sample:
    """What was seen at `t` seconds into the load (stats: over the interval before it)."""

    t: float
    clock: str
    interval: float
    load1: float
    rss: dict[str, float | None] = field(default_factory=dict)  # MiB, by process
    #: Gateway and workers: the lowest and highest RSS of the interval (polled each second).
    rss_range: dict[str, tuple[float, float]] = field(default_factory=dict)
    cpu: dict[str, float | None] = field(default_factory=dict)  # % of one core
    sockets: dict[str, float | None] = field(default_factory=dict)
    lag: dict[int, int] = field(default_factory=dict)  # partition -> records
    stream_sockets: float | None = None  # the gateway's gauge
    stats: IntervalStats = field(default_factory=IntervalStats)

    @property
    def max_lag(self) -> int | None:
        return max(self.lag.values()) if self.lag else None


class KafkaLag:
    """The workers' consumer group: end offset - committed offset, per partition."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.group, self.topic = group, topic
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        self._partitions: list[TopicPartition] = []

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()

    async def stop(self) -> None:
        with contextlib.suppress(Exception):  # closing at the end is best effort
            await self.consumer.stop()
        with contextlib.suppress(Exception):
            await self.admin.close()

    async def lags(self) -> dict[int, int]:
        if not self._partitions:
            (described,) = await self.admin.describe_topics([self.topic])
            found = sorted(p["partition"] for p in described["partitions"])
            self._partitions = [TopicPartition(self.topic, p) for p in found]
        committed = await self.admin.list_consumer_group_offsets(self.group)
        ends = await self.consumer.end_offsets(self._partitions)
        lags = {}
        for tp in self._partitions:
            done = committed.get(tp)
            offset = done.offset if done is not None and done.offset >= 0 else 0
            lags[tp.partition] = max(0, ends[tp] - offset)
        return lags


class RssRange:
    """The lowest and highest RSS of the gateway and workers between two samples, polled
    every second: a point sample can land on a transient peak (an argon2 hash of a
    sign-in holds 64 MiB while it runs), and a leak shows as a rising floor."""

    EVERY = 1.0

    def __init__(self, target: Target) -> None:
        self.target = target
        self._range: dict[str, tuple[float, float]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def take(self) -> dict[str, tuple[float, float]]:
        taken, self._range = self._range, {}
        return taken

    async def _poll(self) -> None:
        while True:
            for name, pid in self.target.app_pids().items():
                mib = None if pid is None else procfs.rss_mib(pid)
                if mib is not None:
                    low, high = self._range.get(name, (mib, mib))
                    self._range[name] = (min(low, mib), max(high, mib))
            await asyncio.sleep(self.EVERY)


class CpuMeter:
    """CPU of processes in % of one core, over the time between two readings of each.
    Every reading carries the clock of its own moment: a sample reads the load processes
    and Kafka first, which can take seconds, and a time taken before that would stretch
    the span of one reading and shorten the next."""

    def __init__(
        self,
        read: Callable[[int], float | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read  # pid -> CPU seconds used so far (None: gone)
        self._clock = clock
        self._last: dict[int, tuple[float, float]] = {}  # pid -> (cpu seconds, at)

    def percent(self, pid: int) -> float | None:
        """Since the previous reading of `pid`; None at the first one."""
        used = self._read(pid)
        at = self._clock()
        if used is None:
            return None
        before = self._last.get(pid)
        self._last[pid] = (used, at)
        if before is None or at <= before[1]:
            return None
        return 100.0 * (used - before[0]) / (at - before[1])


class Sampler:
    """Owns the clients a sample needs; `sample()` takes one."""

    def __init__(
        self,
        target: Target,
        loads: Sequence[LoadProcess],
        started: float,
        *,
        kafka: KafkaLag | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.loads = loads
        self.started = started
        dev = target.dev
        self.kafka = kafka or KafkaLag(dev.local.kafka_bootstrap, dev.app_id, dev.topic)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self.rss_range = RssRange(target)
        self.cpu = CpuMeter(procfs.cpu_seconds, clock)
        self._clock = clock
        self._last = started

    async def __aenter__(self) -> Sampler:
        await self.kafka.start()
        self.rss_range.start()
        for pid in self._pids().values():  # CPU is a difference: the first sample has one
            if pid is not None:
                self.cpu.percent(pid)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.rss_range.stop()
        await self.kafka.stop()
        await self.http.close()

    async def sample(self) -> Sample:
        now = self._clock()
        stats, lag, gauge = await asyncio.gather(self._load_stats(), self._lag(), self._gauge())
        sample = Sample(
            t=round(now - self.started, 1),
            clock=time.strftime("%H:%M:%S"),
            interval=now - self._last,
            load1=os.getloadavg()[0],
            lag=lag,
            stream_sockets=gauge,
            stats=stats,
            rss_range=self.rss_range.take(),
        )
        self._last = now
        app = self.target.app_pids()
        for name, pid in self._pids(app).items():
            tree = name == "postgres"  # one process per connection
            sample.rss[name] = (
                None if pid is None else (procfs.tree_mib if tree else procfs.rss_mib)(pid)
            )
            sample.cpu[name] = None if pid is None else self.cpu.percent(pid)
        for name, mib in sample.rss.items():  # the sample itself is one more reading
            if name in sample.rss_range and mib is not None:
                low, high = sample.rss_range[name]
                sample.rss_range[name] = (min(low, mib), max(high, mib))
        for name, pid in app.items():
            sample.sockets[name] = None if pid is None else procfs.sockets(pid)
        return sample

    def _pids(self, app: dict[str, int | None] | None = None) -> dict[str, int | None]:
        """Every sampled process: the gateway and workers, the context, the load processes."""
        app = self.target.app_pids() if app is None else app
        return {**app, **self.target.context_pids(), **{x.name: x.pid for x in self.loads}}

    async def _load_stats(self) -> IntervalStats:
        merged = IntervalStats()
        for stats in await asyncio.gather(*(x.tick() for x in self.loads)):
            merged.merge(stats)
        return merged

    async def _lag(self) -> dict[int, int]:
        try:
            return await asyncio.wait_for(self.kafka.lags(), 8)
        except Exception:  # Kafka not answering is a gap in the series, not the end of the run
            return {}

    async def _gauge(self) -> float | None:
        headers = {"Authorization": f"Bearer {LOCAL_ADMIN_TOKEN}"}
        try:
            async with self.http.get(f"{self.target.api_url}/metrics", headers=headers) as resp:
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            return None
        return metric_sum(text, "gateway_stream_sockets")


def flatten(sample: Sample) -> dict[str, Any]:
    """One CSV row: every series of the sample under its own column."""
    row: dict[str, Any] = {
        "t_s": sample.t,
        "clock": sample.clock,
        "load1": round(sample.load1, 2),
    }
    for name, value in sample.rss.items():  # MiB; the columns keep their first names
        row[f"rss_mb_{name}"] = _round(value, 1)
    for name, (low, high) in sample.rss_range.items():
        row[f"rss_min_mb_{name}"], row[f"rss_max_mb_{name}"] = round(low, 1), round(high, 1)
    for name, value in sample.cpu.items():
        row[f"cpu_pct_{name}"] = _round(value, 1)
    for name, value in sample.sockets.items():
        row[f"sockets_{name}"] = value
    row["stream_sockets_gateway"] = sample.stream_sockets
    row["stream_sockets_clients"] = sample.stats.gauges.get("live_open")
    for name, value in sorted(sample.stats.gauges.items()):
        if name.startswith("loop_lag_ms_"):
            row[name] = value
    for op, histogram in sorted(sample.stats.latency.items()):
        row[f"{op}_per_s"] = round(histogram.count / sample.interval, 2)
        for label, q in (("p50", 0.5), ("p99", 0.99)):
            row[f"{op}_{label}_ms"] = _round(_ms(histogram.quantile(q)), 2)
        row[f"{op}_max_ms"] = round(histogram.maximum * 1000, 2)
    errors = sample.stats.errors()
    for code, n in sorted(errors.items()):
        row[f"errors_{code}"] = n
    row["errors_total"] = sum(errors.values())
    row["errors_5xx"] = sum(n for code, n in errors.items() if is_server_error(code))
    row["shed"] = sum(sample.stats.shed.values())
    for partition, lag in sorted(sample.lag.items()):
        row[f"lag_p{partition}"] = lag
    row["lag_max"] = sample.max_lag
    return row


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
