"""Rewinder: a partition that stopped moving with lag, while writes succeed, is sought back
to where it stands through faust's Consumer.seek (hand-written fakes for faust and clock)."""

from __future__ import annotations

from typing import Any

from faust.types import TP

from dialogue_worker.adapters.rewind import Rewinder
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.health import PartitionState, WorkerHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Consumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[str, int, int]] = []
        self.error: Exception | None = None

    def assignment(self) -> set[Any]:
        return {TP("msgs", 0), TP("msgs", 1)}

    async def seek_wait(self, partitions: dict[Any, int]) -> None:
        if self.error is not None:
            raise self.error
        self.seeks += [(tp.topic, tp.partition, offset) for tp, offset in partitions.items()]


class App:
    def __init__(self) -> None:
        self.consumer = Consumer()


async def never_fails() -> None:
    return None


class Mender:
    """The committer's `mend`: True for partitions whose stretch Kafka shows empty."""

    def __init__(self) -> None:
        self.empty: set[tuple[str, int]] = set()
        self.error: Exception | None = None
        self.calls: list[tuple[tuple[str, int], int]] = []

    async def __call__(self, tp: tuple[str, int], end: int) -> bool:
        self.calls.append((tp, end))
        if self.error is not None:
            raise self.error
        return tp in self.empty


World = tuple[Rewinder, App, WorkerHealth, dict[tuple[str, int], PartitionState], Clock]


def world(mender: Mender | None = None) -> World:
    clock = Clock()
    partitions = {("msgs", 0): PartitionState(1235, 94), ("msgs", 1): PartitionState(0, 50)}
    health = WorkerHealth(never_fails, lambda: partitions, stall_after=30, clock=clock)
    app = App()
    mend = mender or Mender()
    rewinder = Rewinder(app, health, WorkerMetrics(), every=30, mend=mend, clock=clock)
    return rewinder, app, health, partitions, clock


async def test_a_partition_stuck_with_lag_is_sought_back_to_where_it_stands() -> None:
    rewinder, app, _, _, clock = world()
    assert await rewinder.run_once() == []  # first seen now: not stuck yet
    clock.now += 31

    assert [s.partition for s in await rewinder.run_once()] == [0]
    assert app.consumer.seeks == [("msgs", 0, 94)]  # not partition 1: no lag


async def test_once_per_period_and_not_while_writes_fail_or_the_partition_moves() -> None:
    rewinder, app, health, partitions, clock = world()
    await rewinder.run_once()
    clock.now += 31
    await rewinder.run_once()
    await rewinder.run_once()
    assert len(app.consumer.seeks) == 1  # the seek gets its chance first
    clock.now += 31
    health.failing("write failing: connection refused")  # waiting for MongoDB is right
    assert await rewinder.run_once() == []
    health.progressed()
    partitions[("msgs", 0)] = PartitionState(1000, 300)  # it moved
    assert await rewinder.run_once() == []
    assert len(app.consumer.seeks) == 1


async def test_a_stretch_without_records_is_skipped_not_sought() -> None:
    mender = Mender()
    mender.empty.add(("msgs", 0))  # e.g. a transaction marker at the partition's end
    rewinder, app, _, _, clock = world(mender)
    await rewinder.run_once()
    clock.now += 31

    assert [s.partition for s in await rewinder.run_once()] == []
    assert mender.calls == [(("msgs", 0), 94 + 1235)]  # up to the high watermark
    assert app.consumer.seeks == []


async def test_when_kafka_cannot_say_the_partition_is_sought_back() -> None:
    mender = Mender()
    mender.error = ConnectionError("kafka unreachable")
    rewinder, app, _, _, clock = world(mender)
    await rewinder.run_once()
    clock.now += 31

    assert [s.partition for s in await rewinder.run_once()] == [0]
    assert app.consumer.seeks == [("msgs", 0, 94)]


async def test_a_seek_that_fails_is_tried_again_next_period_not_raised() -> None:
    """The timer that runs the Rewinder is one of faust's tasks: an exception there (the
    consumer thread's IllegalStateError on a partition revoked mid-seek) stops the worker."""
    rewinder, app, _, _, clock = world()
    await rewinder.run_once()
    clock.now += 31
    app.consumer.error = RuntimeError("No current assignment for partition msgs-0")
    assert await rewinder.run_once() == []
    app.consumer.error = None
    clock.now += 31
    assert [s.partition for s in await rewinder.run_once()] == [0]
    assert app.consumer.seeks == [("msgs", 0, 94)]
