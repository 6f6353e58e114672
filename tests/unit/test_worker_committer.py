"""OffsetCommitter: what it commits, when, and what a failure leaves.

Hand-written fakes stand for faust's consumer and Kafka's answers; the real ones are in
tests/integration/test_worker_commits.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.types import TP

from dialogue_worker.adapters import commits
from dialogue_worker.adapters.commits import OffsetCommitter
from dialogue_worker.domain.offsets import DurableOffsets
from dialogue_worker.metrics import WorkerMetrics
from tests.support.waiting import eventually, settle

TOPIC = "msgs"


class Consumer:
    """faust's consumer: `_commit` answers `accept` (False: the group rebalanced)."""

    def __init__(self) -> None:
        self.commits: list[dict[tuple[str, int], int]] = []
        self.accept = True
        self.hang = False

    async def _commit(self, offsets: dict[Any, int]) -> bool:
        if self.hang:
            await asyncio.Event().wait()
        self.commits.append({(tp.topic, tp.partition): o for tp, o in offsets.items()})
        return self.accept


class App:
    def __init__(self) -> None:
        self.consumer = Consumer()


class Positions:
    """Kafka's committed offsets (None: never committed) and log starts."""

    def __init__(self) -> None:
        self.committed_offsets: dict[tuple[str, int], int | None] = {}
        self.earliest_offsets: dict[tuple[str, int], int] = {}
        self.failing = False

    async def committed(self, tps: Any) -> dict[tuple[str, int], int | None]:
        if self.failing:
            raise ConnectionError("kafka unreachable")
        return {tp: self.committed_offsets.get(tp) for tp in tps}

    async def earliest(self, tps: Any) -> dict[tuple[str, int], int]:
        return {tp: self.earliest_offsets.get(tp, 0) for tp in tps}


def world() -> tuple[OffsetCommitter, App, Positions, DurableOffsets]:
    app, positions, ledger = App(), Positions(), DurableOffsets()
    committer = OffsetCommitter(app, ledger, positions, TOPIC, WorkerMetrics())  # type: ignore[arg-type]
    return committer, app, positions, ledger


async def test_commits_only_up_to_the_first_offset_not_durable_and_only_when_it_moved() -> None:
    committer, app, positions, ledger = world()
    positions.committed_offsets[(TOPIC, 0)] = 100
    positions.earliest_offsets[(TOPIC, 1)] = 7  # never committed: starts at the log start
    await committer.assigned({TP(TOPIC, 0), TP(TOPIC, 1), TP("other", 0)})
    assert ledger.assigned() == [(TOPIC, 0), (TOPIC, 1)]

    await committer.tick()
    assert app.consumer.commits == []  # nothing moved yet
    ledger.mark((TOPIC, 0), [*range(100, 110), *range(111, 120)])  # 110 not durable
    await committer.tick()
    assert app.consumer.commits == [{(TOPIC, 0): 110}]
    await committer.tick()
    assert len(app.consumer.commits) == 1


async def test_a_refused_commit_is_tried_again_on_the_next_tick() -> None:
    committer, app, positions, ledger = world()
    positions.committed_offsets[(TOPIC, 0)] = 0
    await committer.assigned({TP(TOPIC, 0)})
    ledger.mark((TOPIC, 0), range(0, 5))
    app.consumer.accept = False
    await committer.tick()
    app.consumer.accept = True
    await committer.tick()
    assert app.consumer.commits == [{(TOPIC, 0): 5}, {(TOPIC, 0): 5}]


async def test_nothing_is_committed_while_the_start_is_unknown() -> None:
    committer, app, positions, ledger = world()
    positions.failing = True
    await committer.assigned({TP(TOPIC, 0)})
    ledger.mark((TOPIC, 0), range(0, 50))
    await committer.tick()
    assert app.consumer.commits == [] and ledger.through((TOPIC, 0)) is None
    positions.failing = False
    positions.committed_offsets[(TOPIC, 0)] = 0
    await committer.tick()  # learns the start, then commits what follows on from it
    assert app.consumer.commits == [{(TOPIC, 0): 50}]


async def test_revocation_commits_what_is_durable_then_forgets_the_partition() -> None:
    committer, app, positions, ledger = world()
    positions.committed_offsets[(TOPIC, 0)] = 10
    await committer.assigned({TP(TOPIC, 0)})
    ledger.mark((TOPIC, 0), range(10, 20))
    await committer.revoked({TP(TOPIC, 0)})
    assert app.consumer.commits == [{(TOPIC, 0): 20}]
    assert not ledger.owns((TOPIC, 0))
    ledger.mark((TOPIC, 0), range(20, 30))  # the batch in hand finished later
    await committer.tick()
    assert len(app.consumer.commits) == 1


async def three_durable() -> tuple[OffsetCommitter, App, DurableOffsets]:
    """A committer of one partition, assigned from offset 0, whose offsets 0..2 are
    durable."""
    committer, app, positions, ledger = world()
    positions.committed_offsets[(TOPIC, 0)] = 0
    await committer.assigned({TP(TOPIC, 0)})
    ledger.mark((TOPIC, 0), range(0, 3))
    return committer, app, ledger


async def test_a_commit_hanging_at_revocation_does_not_hold_the_rebalance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commits, "REBALANCE_STEP_WITHIN", 0.01)
    committer, app, ledger = await three_durable()
    app.consumer.hang = True
    await committer.revoked({TP(TOPIC, 0)})  # returns: the next owner reads 0..2 again
    assert not ledger.owns((TOPIC, 0))


async def first_commit_held(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[OffsetCommitter, App, DurableOffsets, asyncio.Event, list[dict[Any, int]]]:
    """A committer with offsets 0..2 of its one partition durable, whose first commit
    hangs in faust's consumer thread until `release` is set (the timer stops waiting for
    it at once); `started`: every commit as it was sent."""
    monkeypatch.setattr(commits, "COMMIT_WITHIN", 0.01)
    committer, app, ledger = await three_durable()
    release = asyncio.Event()
    started: list[dict[Any, int]] = []
    accept = app.consumer._commit

    async def first_held(offsets: dict[Any, int]) -> bool:
        started.append({(tp.topic, tp.partition): o for tp, o in offsets.items()})
        if len(started) == 1:
            await release.wait()
        return await accept(offsets)

    app.consumer._commit = first_held  # type: ignore[method-assign]
    return committer, app, ledger, release, started


async def test_a_commit_hanging_on_the_timer_holds_no_tick_and_starts_no_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unbounded timer commit held every later tick for as long as it hung; a bounded
    wait that started a commit at every tick piled hung commits up in faust's consumer
    thread, where cancelling the wait does not stop them."""
    committer, app, ledger, release, started = await first_commit_held(monkeypatch)
    async with asyncio.timeout(5):
        await committer.tick()
        ledger.mark((TOPIC, 0), range(3, 5))
        await committer.tick()  # the first still runs: no second one
    assert len(started) == 1
    release.set()
    await eventually(lambda: app.consumer.commits, lambda c: c == [{(TOPIC, 0): 3}])
    await committer.tick()  # it ended: the next tick commits what followed
    assert app.consumer.commits == [{(TOPIC, 0): 3}, {(TOPIC, 0): 5}]


async def test_a_revocation_commit_waits_for_the_timers_commit_still_running(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sent beside a hung timer commit, the revocation's newer offsets could land first
    and the timer's older ones last, moving the group's offset back (found in review)."""
    committer, app, ledger, release, started = await first_commit_held(monkeypatch)
    await committer.tick()  # its commit of 3 hangs in faust's consumer thread
    ledger.mark((TOPIC, 0), range(3, 8))
    revoking = asyncio.ensure_future(committer.revoked({TP(TOPIC, 0)}))
    await settle()  # the revocation reaches its commit
    assert started == [{(TOPIC, 0): 3}]  # nothing sent beside the one running
    release.set()
    await asyncio.wait_for(revoking, 60)  # a bound on a hang, not a figure
    assert app.consumer.commits == [{(TOPIC, 0): 3}, {(TOPIC, 0): 8}]


async def test_a_revocation_gives_up_while_the_timers_commit_hangs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commits, "COMMIT_WITHIN", 0.01)
    monkeypatch.setattr(commits, "REBALANCE_STEP_WITHIN", 0.01)
    committer, app, ledger = await three_durable()
    app.consumer.hang = True
    await committer.tick()
    ledger.mark((TOPIC, 0), range(3, 8))
    await committer.revoked({TP(TOPIC, 0)})  # returns: the next owner reads them again
    assert app.consumer.commits == [] and not ledger.owns((TOPIC, 0))
