"""A transactional producer's last commit marker, at the end of a partition: the worker
passes it on its watch timer, before the partition could count as stuck.

Simulated time, the real DurableOffsets, PartitionOrder, WorkerHealth and Rewinder, and a
hand-written Kafka: each transaction is one record and its commit marker, so a quiet
partition waits one offset short of its high watermark."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Coroutine
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dialogue_worker.adapters.rewind import Rewinder
from dialogue_worker.domain.offsets import DurableOffsets
from dialogue_worker.domain.records import InboundRecord
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.health import PartitionState, Status, WorkerHealth
from dialogue_worker.services.ordering import PartitionOrder

TP = ("dialogue.messages", 3)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Kafka:
    """The partition as Kafka holds it: records at `records`, anything else below `end`
    (the high watermark) a marker."""

    def __init__(self) -> None:
        self.records: set[int] = set()
        self.end = 0
        self.probes = 0
        self.failing = False

    async def first_record(self, tp: tuple[str, int], offset: int, end: int) -> int | None:
        self.probes += 1
        if self.failing:
            raise TimeoutError("kafka unreachable")
        return next((o for o in range(offset, min(end, self.end)) if o in self.records), None)

    async def rewind(self, tp: tuple[str, int], offset: int) -> None:
        raise AssertionError("no record is missing: nothing to read again")

    async def start(self, tp: tuple[str, int]) -> int:
        return 0  # nothing deleted


class Consumer:
    """faust's consumer as the Rewinder seeks it."""

    def __init__(self) -> None:
        self.seeks: list[dict[object, int]] = []

    def assignment(self) -> set[tuple[str, int]]:
        return {TP}

    async def seek_wait(self, offsets: dict[object, int]) -> None:
        self.seeks.append(offsets)


class App:
    def __init__(self) -> None:
        self.consumer = Consumer()


def record(offset: int) -> InboundRecord:
    return InboundRecord(TP[0], TP[1], offset, None, b"{}")


class Worker:
    """What `bootstrap.build` wires around one partition, with the agent's persist reduced
    to what it does to the offsets (admit, then mark durable)."""

    def __init__(self, stall_after: float, start: int = 0) -> None:
        self.clock = Clock()
        self.kafka = Kafka()
        self.kafka.end = start
        self.ledger = DurableOffsets()
        self.ledger.assign([TP])
        self.ledger.begin(TP, start)
        metrics = WorkerMetrics()
        self.order = PartitionOrder(self.ledger, self.kafka, metrics, clock=self.clock)

        async def ping() -> None:
            return None

        self.health = WorkerHealth(ping, self.states, stall_after=stall_after, clock=self.clock)
        self.app = App()
        self.rewinder = Rewinder(
            self.app,
            self.health,
            metrics,
            every=stall_after,
            mend=self.order.mend,
            clock=self.clock,
        )
        self.stall_after = stall_after
        self.interval = max(1.0, stall_after / 3)  # bootstrap's watch timer

    def states(self) -> dict[tuple[str, int], PartitionState]:
        through = self.ledger.through(TP)
        assert through is not None
        return {TP: PartitionState(max(0, self.kafka.end - through), through)}

    async def transaction(self, records: int = 1) -> None:
        """A producer commits a transaction of `records` records; the worker stores them."""
        first = self.kafka.end
        self.kafka.records |= set(range(first, first + records))
        self.kafka.end = first + records + 1  # the commit marker
        admitted = await self.order.admit([record(o) for o in range(first, first + records)])
        self.ledger.mark(TP, [r.offset for r in admitted])

    async def watch(self) -> None:
        """bootstrap's `watch_partitions`, past reading the end offsets."""
        await self.order.mend_tails(self.states())
        await self.rewinder.run_once()


async def run(
    worker: Worker, arrivals: list[float], heartbeat: float, beat_at: float, watch_at: float
) -> list[tuple[float, str | None]]:
    """Transactions at `arrivals`, the health check every `heartbeat` s, the watch timer
    every period, for three STALL_AFTERs past the last transaction: every health state
    that was not passing."""
    until = max(arrivals, default=0.0) + 3 * worker.stall_after
    events: list[tuple[float, int, str]] = [(t, 0, "transaction") for t in arrivals]
    events += [(beat_at, 1, "heartbeat"), (watch_at, 2, "watch")]
    heapq.heapify(events)
    every = {"heartbeat": heartbeat, "watch": worker.interval}
    bad: list[tuple[float, str | None]] = []
    while events:
        at, rank, what = heapq.heappop(events)
        if at > until:
            break
        worker.clock.now = at
        if what == "transaction":
            await worker.transaction()
            continue
        if what == "heartbeat":
            state = await worker.health.check()
            if state.status is not Status.PASSING:
                bad.append((at, state.reason))
        else:
            await worker.watch()
        heapq.heappush(events, (at + every[what], rank, what))
    return bad


def simulate(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


@settings(max_examples=200, deadline=None)
@given(
    stall_after=st.floats(3.0, 120.0),
    gaps=st.lists(st.floats(0.1, 200.0), min_size=1, max_size=8),
    heartbeat=st.floats(1.0, 10.0),
    beat_phase=st.floats(0.0, 1.0),
    watch_phase=st.floats(0.0, 1.0),
)
def test_a_commit_marker_at_the_end_never_makes_the_partition_stuck(
    stall_after: float,
    gaps: list[float],
    heartbeat: float,
    beat_phase: float,
    watch_phase: float,
) -> None:
    """Whatever the pace of the transactions and the phases of the timers, the health
    stays passing, nothing is sought back, and the commit point reaches the end."""

    async def body() -> None:
        worker = Worker(stall_after)
        arrivals = [sum(gaps[: i + 1]) for i in range(len(gaps))]
        bad = await run(
            worker,
            arrivals,
            heartbeat,
            beat_phase * heartbeat,
            watch_phase * worker.interval,
        )
        assert bad == []
        assert worker.health.stuck() == []
        assert worker.app.consumer.seeks == []
        assert worker.ledger.through(TP) == worker.kafka.end

    simulate(body)


def test_the_reviewers_case_a_quiet_partition_after_1000_records_is_passed_promptly() -> None:
    """Records 0..999 stored, the marker at 1000: the high watermark is 1001 (the
    reproduction in the review warned at 33.5 s and 37 s)."""

    async def body() -> None:
        worker = Worker(stall_after=30.0)
        await worker.transaction(records=1000)
        mended_by = None
        bad = []
        for tick in range(int(120 / 0.5)):
            worker.clock.now = tick * 0.5
            if tick % 7 == 0:  # the heartbeat, every 3.5 s
                state = await worker.health.check()
                if state.status is not Status.PASSING:
                    bad.append((worker.clock.now, state.reason))
            if tick % 20 == 14:  # the watch timer, every 10 s from 7 s
                await worker.watch()
                if mended_by is None and worker.ledger.through(TP) == 1001:
                    mended_by = worker.clock.now
        assert bad == [] and worker.app.consumer.seeks == []
        assert mended_by is not None and mended_by <= 2 * worker.interval

    simulate(body)


def test_a_partition_that_keeps_moving_is_never_probed() -> None:
    """Under traffic the timer costs Kafka nothing: the position moves between ticks."""

    async def body() -> None:
        worker = Worker(stall_after=30.0)
        for second in range(200):
            worker.clock.now = float(second)
            await worker.transaction()  # its marker keeps the lag at 1 between records
            if second % 10 == 0:
                await worker.watch()
        assert worker.kafka.probes == second  # each record's hole check, none from the timer
        assert worker.ledger.through(TP) == worker.kafka.end - 1

    simulate(body)


def test_records_in_hand_are_left_to_their_batch() -> None:
    """Handed over and not yet durable (MongoDB is slow, say): the tail is not probed."""

    async def body() -> None:
        worker = Worker(stall_after=30.0)
        worker.kafka.records |= {0, 1}
        worker.kafka.end = 3
        await worker.order.admit([record(0), record(1)])  # being written, not marked yet
        for second in range(0, 30, 10):
            worker.clock.now = float(second)
            assert await worker.order.mend_tails(worker.states()) == []
        assert worker.kafka.probes == 0 and worker.ledger.through(TP) == 0

    simulate(body)


def test_when_kafka_does_not_answer_the_tail_waits_for_the_next_period() -> None:
    async def body() -> None:
        worker = Worker(stall_after=30.0)
        await worker.transaction()
        worker.kafka.failing = True
        for second in (0.0, 10.0, 20.0):
            worker.clock.now = second
            assert await worker.order.mend_tails(worker.states()) == []
        worker.kafka.failing = False
        worker.clock.now = 30.0
        assert await worker.order.mend_tails(worker.states()) == [TP]
        assert worker.ledger.through(TP) == worker.kafka.end

    simulate(body)


def test_a_partition_assigned_at_its_last_marker_is_passed_though_nothing_comes() -> None:
    """Committed up to the marker by a previous owner: no record is ever handed over."""

    async def body() -> None:
        worker = Worker(stall_after=30.0, start=40)
        worker.kafka.end = 41  # offset 40 is the last transaction's marker
        passed = [await worker.order.mend_tails(worker.states()) for _ in range(2)]
        assert passed == [[], [TP]]  # the second tick: it stood still since the first
        assert worker.ledger.through(TP) == 41

    simulate(body)
