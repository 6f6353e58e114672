"""BatchPersister against the hand-written in-memory store and outbox (tests/support).

Seqs per chat, redelivery, copies and conflicts, crashes between steps, a second writer,
forwarding, dead letters, retries and the narrowing down of records the store refuses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import MessageCreated
from contracts.records import MessageRecord
from dialogue_worker.domain.offsets import DurableOffsets
from dialogue_worker.domain.records import FORWARDED_FROM, InboundRecord, RejectKind
from dialogue_worker.domain.sequencing import ChatState, Known, text_digest
from dialogue_worker.errors import StoreRefused
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.chat_book import ChatBook
from dialogue_worker.services.health import Status, WorkerHealth
from dialogue_worker.services.ordering import PartitionOrder
from dialogue_worker.services.persistence import BatchPersister
from dialogue_worker.services.ports import ChatAdvance, IdEntry, PartitionLog, StoredMessage
from platform_common.retry import Backoff
from tests.support.worker_fakes import Crash, MemoryOutbox, MemoryStore

CID = "65f0c0ffee0000000000beef"
OTHER = "65f0c0ffee0000000000cafe"
NOW = 1_700_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeps:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.clock.now += delay


def rec(
    offset: int,
    uid: int = 1,
    text: str | None = None,
    *,
    cid: str = CID,
    mid: int | None = None,
    partition: int = 0,
    created: int = NOW,
) -> InboundRecord:
    value = {
        "v": 1,
        "id": f"{(mid if mid is not None else offset) + 1:024x}",
        "cid": cid,
        "uid": uid,
        "text": text if text is not None else f"m{offset}",
        "createdAt": created,
    }
    return InboundRecord("msgs", partition, offset, cid.encode(), orjson.dumps(value))


class World:
    """A persister over a fresh store, with two chats (members 1 and 2)."""

    def __init__(
        self,
        store: MemoryStore | None = None,
        partitions: int | None = None,
        partition_log: PartitionLog | None = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store or MemoryStore()
        if store is None:
            self.store.add_chat(CID, {1, 2})
            self.store.add_chat(OTHER, {1, 2})
        self.outbox = MemoryOutbox()
        self.clock = Clock()
        self.sleeps = Sleeps(self.clock)
        self.metrics = WorkerMetrics()
        self.health = WorkerHealth(self.store.ping, dict, stall_after=30, clock=self.clock)
        self.ledger = DurableOffsets()
        for partition in range(4):
            self.ledger.assign([("msgs", partition)])
            self.ledger.begin(("msgs", partition), 0)
        self.book = ChatBook(self.store, 5.0, self.clock)
        self.persister = BatchPersister(
            self.store,
            self.outbox,
            self.book,
            self.health,
            self.metrics,
            backoff=lambda: Backoff(0.1, 0.4, jitter=0.0),
            sleep=self.sleeps,
            clock=self.clock,
            wall_clock=wall_clock or (lambda: self.clock.now),
            ledger=self.ledger,
            order=None
            if partition_log is None
            else PartitionOrder(self.ledger, partition_log, self.metrics),
        )
        if partitions is not None:
            self.persister.route(lambda cid: 0 if cid == CID else 1)

    def restarted(self) -> World:
        """A new worker process over the same store (what a SIGKILL and restart leaves)."""
        return World(self.store)

    def events(self) -> list[tuple[str, int, str]]:
        return [
            (e.cid, e.seq, e.message.id)
            for e in self.outbox.events
            if isinstance(e, MessageCreated)
        ]


def ids(*offsets: int) -> list[str]:
    return [f"{o + 1:024x}" for o in offsets]


async def test_each_chat_gets_seqs_1_2_3_in_partition_order() -> None:
    w = World()
    batch = [rec(0), rec(1, cid=OTHER), rec(2), rec(3, uid=2), rec(4, cid=OTHER)]

    outcome = await w.persister.persist(batch)

    assert (outcome.stored, outcome.duplicates, outcome.dead_lettered) == (5, 0, 0)
    assert w.store.seqs(CID) == dict(zip([1, 2, 3], ids(0, 2, 3), strict=True))
    assert w.store.seqs(OTHER) == dict(zip([1, 2], ids(1, 4), strict=True))
    assert w.events() == [
        (CID, 1, ids(0)[0]),
        (OTHER, 1, ids(1)[0]),
        (CID, 2, ids(2)[0]),
        (CID, 3, ids(3)[0]),
        (OTHER, 2, ids(4)[0]),
    ]
    chat = w.store.chats[CID].chat
    assert chat.last_seq == 3 and chat.last_message and chat.last_message.text == "m3"
    assert w.ledger.through(("msgs", 0)) == 5  # what may be committed


async def test_a_redelivered_batch_changes_nothing_and_publishes_its_events_again() -> None:
    w = World()
    batch = [rec(i, uid=1 + i % 2) for i in range(10)]
    await w.persister.persist(batch)

    again = await w.restarted().persister.persist(batch)  # a new process reads them again

    assert (again.stored, again.duplicates) == (0, 10)
    assert list(w.store.seqs(CID)) == list(range(1, 11))
    w2_events = [e for e in w.outbox.events]  # the first process's events
    assert len(w2_events) == 10


@pytest.mark.parametrize("step", ["claim", "append", "advance"])
async def test_a_crash_after_any_step_leaves_no_gap_and_no_second_seq(step: str) -> None:
    w = World()
    await w.persister.persist([rec(0), rec(1)])
    w.store.crash_after = step
    batch = [rec(2), rec(3), rec(4)]
    with pytest.raises(Crash):
        await w.persister.persist(batch)

    again = w.restarted()
    await again.persister.persist(batch)  # redelivered from the last commit
    # The chat counts what was stored, also when the crash came before it was counted.
    chat = w.store.chats[CID].chat
    assert (chat.last_seq, chat.last_message and chat.last_message.text) == (5, "m4")
    assert chat.last_at == w.store.messages[(CID, 5)].at
    await again.persister.persist([rec(5)])

    assert w.store.seqs(CID) == dict(zip(range(1, 7), ids(0, 1, 2, 3, 4, 5), strict=True))
    assert {(c, s) for c, s, _ in again.events()} >= {(CID, s) for s in range(3, 7)}
    assert w.store.chats[CID].state == ChatState(6, 0, 5)


@pytest.mark.parametrize("step", ["claim", "append", "advance"])
async def test_a_crash_with_a_copy_of_a_stored_message_in_the_batch_keeps_partition_order(
    step: str,
) -> None:
    """The copy (produced twice) is planned as new until its claim finds the id taken; the
    entries claimed above it in one unordered insert stayed as seats a crash left to the
    redelivery: seq 3 empty for good, the next message stored there, out of order."""
    w = World()
    await w.persister.persist([rec(0), rec(1)])
    w.store.crash_after = step
    batch = [rec(2, mid=1, text="m1"), rec(3), rec(4), rec(5)]  # offset 2 repeats offset 1
    with pytest.raises(Crash):
        await w.persister.persist(batch)

    again = w.restarted()
    await again.persister.persist(batch)
    await again.persister.persist([rec(6)])
    assert w.store.seqs(CID) == dict(zip(range(1, 7), ids(0, 1, 3, 4, 5, 6), strict=True))
    assert w.store.chats[CID].chat.last_seq == 6
    created = [(s, m) for c, s, m in again.events() if c == CID and s >= 3]
    assert created == list(zip(range(3, 7), ids(3, 4, 5, 6), strict=True))


async def test_a_chats_activity_is_the_moment_its_newest_message_was_stored() -> None:
    """One reading of the clock per batch: the chat list ranks an unmoved chat by its
    `lastAt` and a moved one by its messages' `at`, so the two must be the same number."""
    ticks = iter(range(1_000))
    w = World(wall_clock=lambda: 2_000.0 + next(ticks))  # moves on at every reading
    await w.persister.persist([rec(0), rec(1, cid=OTHER), rec(2)])
    for cid, seq in ((CID, 2), (OTHER, 1)):
        assert w.store.chats[cid].chat.last_at == w.store.messages[(cid, seq)].at


async def test_a_copy_of_a_stored_message_repeats_it_and_another_text_is_a_conflict() -> None:
    w = World()
    await w.persister.persist([rec(0, text="real")])

    # Produced again later (a retry): same id, new offsets; one copy with another text.
    outcome = await w.persister.persist(
        [rec(1, text="real", mid=0), rec(2, text="forged", mid=0), rec(3)]
    )

    assert (outcome.stored, outcome.duplicates, outcome.dead_lettered) == (1, 1, 1)
    assert w.store.seqs(CID) == {1: ids(0)[0], 2: ids(3)[0]}
    assert [(r.record.offset, r.kind) for r in w.outbox.dead] == [(2, RejectKind.ID_CONFLICT)]
    assert w.events()[-2:] == [(CID, 1, ids(0)[0]), (CID, 2, ids(3)[0])]
    assert w.metrics.id_conflicts._value.get() == 1


async def test_a_repeat_built_again_with_another_created_at_is_published_as_stored() -> None:
    """A producer that rebuilds a record to retry it (same id, chat, author and text, a
    fresh createdAt): a repeat, whose event and preview show what history holds."""
    w = World()
    await w.persister.persist([rec(0, text="hi")])
    outcome = await w.persister.persist(
        [rec(1, text="hi", mid=0, created=NOW + 60), rec(2, text="hi", mid=0, created=NOW + 90)]
    )
    assert (outcome.stored, outcome.duplicates) == (0, 2)
    created = [e.message.createdAt for e in w.outbox.events if isinstance(e, MessageCreated)]
    assert created == [NOW, NOW, NOW]
    # Copies inside one batch read as the first, which is the one stored.
    w2 = World()
    await w2.persister.persist([rec(0, text="a"), rec(1, text="a", mid=0, created=NOW + 5)])
    created = [e.message.createdAt for e in w2.outbox.events if isinstance(e, MessageCreated)]
    assert created == [NOW, NOW]
    assert w2.store.chats[CID].chat.last_message is not None
    assert w2.store.chats[CID].chat.last_message.createdAt == NOW


async def test_copies_inside_one_batch_are_stored_once() -> None:
    w = World()
    outcome = await w.persister.persist(
        [rec(0, text="a"), rec(1, text="a", mid=0), rec(2, text="b", mid=0), rec(3)]
    )
    assert (outcome.stored, outcome.duplicates, outcome.dead_lettered) == (2, 1, 1)
    assert list(w.store.seqs(CID)) == [1, 2]


async def test_an_id_in_another_chat_is_a_conflict() -> None:
    w = World()
    await w.persister.persist([rec(0)])
    outcome = await w.persister.persist([rec(1, cid=OTHER, text="m0", mid=0)])
    assert outcome.dead_lettered == 1 and w.store.seqs(OTHER) == {}


async def test_an_id_another_chat_claimed_but_has_not_stored_yet_is_a_conflict() -> None:
    """OTHER's owner (another worker) claimed the id and is about to store its message:
    its entry is not taken over, so the id is never stored in two chats; a copy of the
    record in the same batch is dead-lettered with it."""
    w = World()
    mid = ids(0)[0]
    theirs = IdEntry(mid, OTHER, 1, 1, text_digest("m0"), 3, 7)
    w.store.ids[mid] = theirs  # claimed, not appended yet

    outcome = await w.persister.persist([rec(0), rec(1, mid=0, text="m0")])

    assert (outcome.stored, outcome.dead_lettered) == (0, 2)
    assert [r.kind for r in w.outbox.dead] == [RejectKind.ID_CONFLICT] * 2
    assert w.store.ids[mid] == theirs and w.store.seqs(CID) == {}


async def test_seqs_taken_by_another_writer_are_read_back_not_overwritten() -> None:
    w = World()
    await w.persister.persist([rec(0)])
    # Another worker (owning the partition for a while) stored seq 2 and 3.
    for seq, mid in ((2, 100), (3, 101)):
        w.store.messages[(CID, seq)] = StoredMessage(
            CID, seq, f"{mid:024x}", 1, "theirs", NOW, 1.0, 0, 50 + seq
        )

    await w.persister.persist([rec(60), rec(61)])

    assert list(w.store.seqs(CID)) == [1, 2, 3, 4, 5]
    assert [w.store.seqs(CID)[s] for s in (4, 5)] == ids(60, 61)


async def test_records_on_another_partition_than_their_chats_are_forwarded() -> None:
    w = World(partitions=2)  # CID lives on partition 0, OTHER on 1
    batch = [rec(0), rec(1, cid=OTHER), rec(2, partition=1)]

    outcome = await w.persister.persist(batch)

    assert outcome.stored == 1 and list(w.store.seqs(CID)) == [1]
    assert [(r.offset, cid) for r, cid in w.outbox.forwarded] == [(1, OTHER), (2, CID)]
    assert w.metrics.forwarded._value.get() == 2


async def test_a_forwarded_copy_still_on_another_partition_is_dead_lettered_not_sent_on() -> None:
    """Workers counting the topic's partitions differently (partitions added, not every
    worker restarted) sent one copy back and forth for as long as both ran, a produce per
    hop and the message never stored (found in review)."""
    w = World(partitions=2)  # CID lives on partition 0
    copy = rec(5, partition=1)
    copy = replace(copy, headers=((FORWARDED_FROM, b"msgs/3/17"), ("trace", b"t")))

    outcome = await w.persister.persist([copy, rec(6, partition=1)])

    assert w.outbox.forwarded and [r.offset for r, _ in w.outbox.forwarded] == [6]
    [dead] = w.outbox.dead
    assert (dead.record.offset, dead.kind) == (5, RejectKind.WRONG_PARTITION)
    assert "forwarded from msgs/3/17 to partition 1" in dead.reason
    assert "places chat" in dead.reason and outcome.stored == 0


async def test_invalid_and_non_member_records_are_dead_lettered_with_reasons() -> None:
    w = World()
    bad_json = InboundRecord("msgs", 0, 3, None, b"{nope")

    outcome = await w.persister.persist([rec(0), rec(1, uid=9), rec(2, text=" "), bad_json])

    assert outcome.stored == 1 and outcome.dead_lettered == 3
    assert {r.record.offset: r.kind for r in w.outbox.dead} == {
        1: RejectKind.NOT_MEMBER,
        2: RejectKind.INVALID,
        3: RejectKind.INVALID,
    }
    assert w.metrics.dead_letters.labels("invalid")._value.get() == 2
    assert list(w.store.seqs(CID)) == [1]  # dead letters get no seq


async def test_write_failures_are_retried_with_backoff_and_reported() -> None:
    w = World()
    w.store.fail_next["append"] = 4
    states = []

    async def sleep_and_look(delay: float) -> None:
        states.append(await w.health.check())
        await Sleeps.__call__(w.sleeps, delay)

    w.persister._sleep = sleep_and_look
    outcome = await w.persister.persist([rec(0)])

    assert outcome.stored == 1
    assert w.sleeps.delays == [0.1, 0.2, 0.4, 0.4]
    assert {s.status for s in states} == {Status.CRITICAL}
    assert "append failed" in (states[0].reason or "")
    assert (await w.health.check()).status is Status.PASSING


async def test_messages_a_refused_batch_stored_itself_count_as_new_when_it_is_halved() -> None:
    """The chat's update was refused after the messages were stored (until 2026-12-06
    FerretDB's lost PostgreSQL connections were refusals): the halves find the batch's
    own messages stored. They are new messages, not repeats (they were counted as
    duplicates, and a benchmark waiting for the persisted count waited forever); a real
    redelivery still counts as repeats."""
    w = World()
    w.store.refuse_after["advance"] = 1

    outcome = await w.persister.persist([rec(0), rec(1)])

    assert (outcome.stored, outcome.duplicates, outcome.dead_lettered) == (2, 0, 0)
    assert w.metrics.persisted._value.get() == 2 and w.metrics.duplicates._value.get() == 0
    assert list(w.store.seqs(CID)) == [1, 2]
    again = await w.restarted().persister.persist([rec(0), rec(1)])
    assert (again.stored, again.duplicates) == (0, 2)


async def test_kafka_failures_retry_only_their_step() -> None:
    w = World()
    w.outbox.fail_next = 2

    outcome = await w.persister.persist([rec(0), rec(1, uid=5)])

    assert outcome.stored == 1 and len(w.outbox.dead) == 1 and len(w.sleeps.delays) == 2


async def test_cached_members_are_rechecked_before_a_rejection() -> None:
    w = World()
    await w.persister.persist([rec(0)])
    w.store.chats[CID].chat = w.store.chats[CID].chat.__class__(
        CID, frozenset({1, 2, 7}), 1, 1.0
    )  # user 7 added a moment ago
    lookups = w.store.calls.count("chats_for_writing")

    outcome = await w.persister.persist([rec(1), rec(2, uid=7)])

    assert outcome.stored == 2 and w.outbox.dead == []
    assert w.store.calls.count("chats_for_writing") == lookups + 1


async def test_a_full_member_table_keeps_the_chats_it_already_answered_for() -> None:
    """The table is emptied when it is full: the chats answered from it before must stay
    in the answer (a fresh chat was missing and its records dead-lettered as unknown)."""
    store = MemoryStore()
    store.add_chat(CID, {1, 2})
    store.add_chat(OTHER, {1, 2})
    book = ChatBook(store, 5.0, max_chats=1)
    assert await book.members({CID: {1}}) == {CID: frozenset({1, 2})}  # the table is full
    both = await book.members({CID: {1}, OTHER: {2}})  # OTHER is fetched: the table clears
    assert both == {CID: frozenset({1, 2}), OTHER: frozenset({1, 2})}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=40))
async def test_the_member_table_holds_at_most_its_bound_of_members_and_answers_right(
    sizes: list[int],
) -> None:
    """Found in review: the table counted chats only; 100,000 chats of 1,000 members each
    (any user can make them, and any record naming one caches it) held ~7 GB."""
    store = MemoryStore()
    cids = [f"{i:024x}" for i in range(len(sizes))]
    for cid, size in zip(cids, sizes, strict=True):
        store.add_chat(cid, set(range(1, size + 1)))
    book = ChatBook(store, 5.0, max_members=500)
    for cid, size in zip(cids, sizes, strict=True):
        assert await book.members({cid: {1}}) == {cid: frozenset(range(1, size + 1))}
        assert book.members_held <= 500
    both = await book.members({cids[0]: {1}, cids[-1]: {1}})  # answered right, held or not
    assert both == {c: frozenset(range(1, sizes[i] + 1)) for c, i in ((cids[0], 0), (cids[-1], -1))}


class PickyStore(MemoryStore):
    """Raises a non-transient error for any write of a "poison" text (as an encoder would)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_chat(CID, {1, 2})
        self.claims: list[int] = []

    async def append(self, messages: Sequence[StoredMessage]) -> dict[str, int]:
        if any("poison" in m.text for m in messages):
            raise OverflowError("MongoDB can only handle up to 8-byte ints")
        return await super().append(messages)

    async def claim(self, entries: Sequence[object]) -> set[str]:  # type: ignore[override]
        self.claims.append(len(entries))
        return await super().claim(entries)  # type: ignore[arg-type]


async def test_a_record_the_store_cannot_take_is_found_by_halving_and_dead_lettered() -> None:
    w = World(PickyStore())
    batch = [rec(i, text="poison" if i == 5 else f"m{i}") for i in range(8)]

    outcome = await w.persister.persist(batch)

    assert (outcome.stored, outcome.dead_lettered) == (7, 1)
    assert [(r.record.offset, r.kind) for r in w.outbox.dead] == [(5, RejectKind.UNSTORABLE)]
    assert "OverflowError" in w.outbox.dead[0].reason
    assert list(w.store.seqs(CID)) == list(range(1, 8))  # no gap where the refused one was
    assert [w.store.seqs(CID)[s] for s in (5, 6, 7)] == ids(4, 6, 7)
    assert w.sleeps.delays == [] and w.ledger.through(("msgs", 0)) == 8
    assert w.metrics.dead_letters.labels("unstorable")._value.get() == 1


async def test_a_store_refusing_everything_while_unwritable_holds_the_batch() -> None:
    store = PickyStore()
    w = World(store)

    async def refuse(messages: Sequence[StoredMessage]) -> set[str]:
        raise OverflowError("backend gone")

    original = store.append
    store.append = refuse  # type: ignore[method-assign]
    store.fail_next["writable"] = 3  # the plain write fails too: an outage
    seen = []

    async def recover_later(delay: float) -> None:
        seen.append((await w.health.check()).status)
        await Sleeps.__call__(w.sleeps, delay)
        if len(w.sleeps.delays) == 3:
            store.append = original  # type: ignore[method-assign]

    w.persister._sleep = recover_later
    outcome = await w.persister.persist([rec(0), rec(1)])

    assert (outcome.stored, outcome.dead_lettered) == (2, 0) and w.outbox.dead == []
    assert set(seen) == {Status.CRITICAL}


class GatedStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.add_chat(CID, {1, 2})
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def append(self, messages: Sequence[StoredMessage]) -> dict[str, int]:
        self.entered.set()
        await self.release.wait()
        return await super().append(messages)


async def test_drain_finishes_the_batch_in_hand_then_takes_no_more() -> None:
    store = GatedStore()
    w = World(store)
    in_hand = asyncio.create_task(w.persister.persist([rec(0)]))
    await store.entered.wait()

    draining = asyncio.create_task(w.persister.drain(30))
    await asyncio.sleep(0)
    assert not draining.done()
    store.release.set()

    assert (await in_hand).stored == 1
    assert await draining is True
    next_batch = asyncio.create_task(w.persister.persist([rec(1)]))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not next_batch.done() and list(store.seqs(CID)) == [1]
    next_batch.cancel()


def test_records_of_the_fake_are_valid() -> None:
    assert MessageRecord.model_validate_json(rec(0).value or b"").cid == CID


async def test_a_stored_message_sent_again_after_a_forgery_in_one_batch_is_a_duplicate() -> None:
    w = World()
    await w.persister.persist([rec(0, text="real")])

    outcome = await w.persister.persist(
        [
            rec(1, text="forged", mid=0),
            rec(2, uid=2, text="real", mid=0),
            rec(3, text="real", mid=0),
        ]
    )

    assert (outcome.stored, outcome.duplicates, outcome.dead_lettered) == (0, 1, 2)
    assert sorted(r.record.offset for r in w.outbox.dead) == [1, 2]
    assert w.store.seqs(CID) == {1: ids(0)[0]}


async def test_what_an_append_stored_beside_a_taken_seq_stays_and_the_rest_follows() -> None:
    """Another writer may already have stored after, or counted, what the append stored
    beside a taken seq: removing it could leave a hole below that writer's messages. It
    stays where it is, out of partition order, and the refused one goes after it."""
    w = World()
    await w.persister.persist([rec(0)])
    # Another worker stored seq 2 only; an append of seqs 2..4 stores 3 and 4 but not 2.
    w.store.messages[(CID, 2)] = StoredMessage(CID, 2, f"{100:024x}", 1, "theirs", NOW, 1.0, 0, 1)

    await w.persister.persist([rec(60), rec(61), rec(62)])

    assert w.store.seqs(CID) == {
        1: ids(0)[0],
        2: f"{100:024x}",
        3: ids(61)[0],
        4: ids(62)[0],
        5: ids(60)[0],
    }
    assert "retract" not in w.store.calls
    assert [w.store.ids[m].seq for m in ids(60, 61, 62)] == [5, 3, 4]
    assert w.store.chats[CID].chat.last_seq == 5


class RacedStore(MemoryStore):
    """Another writer of CID appends at the same moment as the first append here: it
    placed the same message at seq 2 (so it counts the one stored here), another at 3,
    and counts both."""

    def __init__(self) -> None:
        super().__init__()
        self.add_chat(CID, {1, 2})
        self.raced = False

    async def append(self, messages: Sequence[StoredMessage]) -> dict[str, int]:
        if self.raced or not any(m.seq == 3 for m in messages):
            return await super().append(messages)
        self.raced = True
        self.messages[(CID, 3)] = StoredMessage(CID, 3, f"{100:024x}", 1, "theirs", NOW, 1.0, 0, 9)
        taken = await super().append(messages)
        row = self.chats[CID]
        row.state = ChatState(3, 0, 9)  # the other writer counts 2 and 3
        return taken


async def test_messages_stored_beside_a_taken_seq_stay_where_the_other_writer_counts_them() -> None:
    """Nothing the append stored is removed: seq 2 is the message both writers placed
    there, and the other one counted it (removed, it left a hole below the chat's count,
    and the message was stored again at 4); seq 4 stays too, and 61 goes after it."""
    w = World(RacedStore())
    await w.persister.persist([rec(0)])

    await w.persister.persist([rec(60), rec(61), rec(62)])

    assert w.store.seqs(CID) == {
        1: ids(0)[0],
        2: ids(60)[0],
        3: f"{100:024x}",
        4: ids(62)[0],
        5: ids(61)[0],
    }


async def test_chats_stored_beside_one_whose_seqs_were_taken_are_counted() -> None:
    """The append that finds CID's seq taken stores OTHER's messages: the batch is
    planned again, where they are repeats, and OTHER's document still counts them."""
    w = World()
    await w.persister.persist([rec(0)])
    w.store.messages[(CID, 2)] = StoredMessage(CID, 2, f"{100:024x}", 1, "theirs", NOW, 1.0, 0, 1)

    await w.persister.persist([rec(60), rec(61, cid=OTHER), rec(62, cid=OTHER)])

    assert w.store.seqs(OTHER) == {1: ids(61)[0], 2: ids(62)[0]}
    other = w.store.chats[OTHER].chat
    assert (other.last_seq, other.last_message and other.last_message.text) == (2, "m62")
    assert w.store.chats[CID].chat.last_seq == 3
    retracts = w.store.calls.count("retract")
    await w.persister.persist([rec(63, cid=OTHER)])  # its state moved on with them
    assert w.store.seqs(OTHER)[3] == ids(63)[0] and w.store.calls.count("retract") == retracts


async def test_a_revoked_partition_is_read_again_before_its_chats_are_written() -> None:
    w = World()
    await w.persister.persist([rec(0), rec(1)])
    w.persister.forget_partitions([0])  # a rebalance took the partition away and back

    await w.persister.persist([rec(2)])

    assert list(w.store.seqs(CID)) == [1, 2, 3]
    assert "retract" not in w.store.calls  # read before planning: nothing to undo


class RivalStore(MemoryStore):
    """Another writer takes the seq each of our next `rivals` appends wants, just before."""

    def __init__(self, rivals: int) -> None:
        super().__init__()
        self.rivals = rivals

    async def append(self, messages: Sequence[StoredMessage]) -> dict[str, int]:
        if self.rivals and messages:
            self.rivals -= 1
            m = messages[0]
            theirs = f"{1000 + self.rivals:024x}"
            self.messages[(m.cid, m.seq)] = StoredMessage(
                m.cid, m.seq, theirs, 2, "theirs", NOW, 1.0, 0, 1
            )
        return await super().append(messages)


async def test_seqs_that_do_not_settle_are_retried_not_dead_lettered() -> None:
    store = RivalStore(rivals=0)
    store.add_chat(CID, {1, 2})
    w = World(store)
    await w.persister.persist([rec(0)])
    store.rivals = 20  # more rounds than three attempts plan

    await w.persister.persist([rec(1), rec(2)])

    assert w.outbox.dead == []
    seqs = w.store.seqs(CID)
    assert list(seqs) == list(range(1, 24))
    assert sorted(m for m in seqs.values() if m in ids(1, 2)) == ids(1, 2)  # each once
    assert w.metrics.retries.labels("sequence")._value.get() >= 1


async def test_a_left_over_id_stored_beside_a_chat_whose_seq_was_taken_is_stored_once() -> None:
    """Round 1 finds rec(2)'s id claimed by an attempt that died (not applied); round 2
    stores it at seq 2 while another writer takes OTHER's seq; round 3 must see it as
    stored at 2, not plan it again at 3."""
    store = RivalStore(rivals=0)
    store.add_chat(CID, {1, 2})
    store.add_chat(OTHER, {1, 2})
    w = World(store)
    await w.persister.persist([rec(0)])
    mid = ids(2)[0]
    store.ids[mid] = IdEntry(mid, CID, 2, 1, text_digest("m2"), 0, 2)  # never appended
    store.rivals = 1  # the next append finds OTHER's first seq taken

    await w.persister.persist([rec(1, cid=OTHER), rec(2)])

    assert w.store.seqs(CID) == {1: ids(0)[0], 2: mid}
    assert list(w.store.seqs(OTHER)) == [1, 2] and w.store.seqs(OTHER)[2] == ids(1)[0]
    assert (w.store.chats[CID].chat.last_seq, w.store.chats[OTHER].chat.last_seq) == (2, 2)


class UnorderedPickyStore(MemoryStore):
    """Like an unordered insert_many: stores every message it can, then refuses."""

    async def append(self, messages: Sequence[StoredMessage]) -> dict[str, int]:
        others = await super().append([m for m in messages if "poison" not in m.text])
        if any("poison" in m.text for m in messages):
            raise OverflowError("MongoDB can only handle up to 8-byte ints")
        return others


async def test_messages_stored_beside_a_refused_one_leave_no_hole_when_halving() -> None:
    store = UnorderedPickyStore()
    store.add_chat(CID, {1, 2})
    w = World(store)
    batch = [rec(i, text="poison" if i == 2 else f"m{i}") for i in range(6)]

    outcome = await w.persister.persist(batch)

    assert (outcome.stored, outcome.dead_lettered) == (5, 1)
    assert w.store.seqs(CID) == dict(zip(range(1, 6), ids(0, 1, 3, 4, 5), strict=True))
    chat = w.store.chats[CID].chat
    assert (chat.last_seq, chat.last_message and chat.last_message.text) == (5, "m5")
    assert [(c, s) for c, s, _ in w.events()] == [(CID, s) for s in range(1, 6)]


async def left_uncounted() -> World:
    """Seqs 1 and 2 counted; 3..5 (records 2..4) stored by a worker that died before
    counting them."""
    w = World()
    await w.persister.persist([rec(0), rec(1)])
    w.store.crash_after = "append"
    with pytest.raises(Crash):
        await w.persister.persist([rec(2), rec(3), rec(4)])
    return w


async def test_a_redelivery_split_over_batches_counts_each_part_before_its_events() -> None:
    w = await left_uncounted()

    again = w.restarted()
    await again.persister.persist([rec(2), rec(3)])

    chat = w.store.chats[CID].chat
    assert (chat.last_seq, chat.last_message and chat.last_message.text) == (4, "m3")
    assert [s for _, s, _ in again.events()] == [3, 4]
    # They show from now on: their moment is when they were counted.
    assert w.store.messages[(CID, 3)].at == w.store.messages[(CID, 4)].at == chat.last_at
    await again.persister.persist([rec(4)])
    assert w.store.chats[CID].chat.last_seq == 5


class RefusingOnceStore(RivalStore):
    """Refuses the first append outright, then loses seqs to rivals."""

    refuse = False

    async def append(self, messages: Sequence[StoredMessage]) -> dict[str, int]:
        if self.refuse:
            self.refuse = False
            raise OverflowError("refused once")
        return await super().append(messages)


async def test_a_record_refused_once_is_not_dead_lettered_when_its_seqs_do_not_settle() -> None:
    """The check of a record refused once is a write like any other: seqs that do not
    settle in it are retried after a pause, never a reason to dead-letter the record."""
    store = RefusingOnceStore(rivals=0)
    store.add_chat(CID, {1, 2})
    w = World(store)
    await w.persister.persist([rec(0)])
    store.refuse, store.rivals = True, 8  # more rounds than one attempt plans

    outcome = await w.persister.persist([rec(1)])

    assert (outcome.stored, outcome.dead_lettered) == (1, 0) and w.outbox.dead == []
    assert w.store.seqs(CID)[10] == ids(1)[0]


async def test_a_redelivery_that_also_stores_new_messages_stamps_the_left_over_ones() -> None:
    w = await left_uncounted()
    again = w.restarted()
    again.clock.now += 60  # counted a minute later

    await again.persister.persist([rec(2), rec(3), rec(4), rec(5)])

    chat = w.store.chats[CID].chat
    assert chat.last_seq == 6
    assert {w.store.messages[(CID, s)].at for s in range(3, 7)} == {chat.last_at}


async def test_messages_another_writer_counted_meanwhile_are_not_stamped_again() -> None:
    w = await left_uncounted()
    again = w.restarted()
    await again.book.ensure([CID])  # it reads the chat: 2 counted, 5 stored
    # Another writer (the partition's owner for a while) counts them first.
    other = w.restarted()
    await other.persister.persist([rec(2), rec(3), rec(4)])
    counted_at = w.store.chats[CID].chat.last_at
    again.clock.now += 60

    await again.persister.persist([rec(2), rec(3), rec(4)])

    assert {w.store.messages[(CID, s)].at for s in range(3, 6)} == {counted_at}
    assert w.store.chats[CID].chat.last_at == counted_at


async def test_a_crash_after_stamping_is_repaired_by_the_next_redelivery() -> None:
    w = await left_uncounted()
    w.store.crash_after = "restamp"
    with pytest.raises(Crash):
        await w.restarted().persister.persist([rec(2), rec(3), rec(4)])

    last = w.restarted()
    await last.persister.persist([rec(2), rec(3), rec(4)])

    assert w.store.seqs(CID) == dict(zip(range(1, 6), ids(0, 1, 2, 3, 4), strict=True))
    chat = w.store.chats[CID].chat
    assert chat.last_seq == 5 and chat.last_at == w.store.messages[(CID, 3)].at
    assert [s for _, s, _ in last.events()] == [3, 4, 5]


async def test_the_book_knows_a_chats_count_only_while_it_holds_the_chat() -> None:
    store = MemoryStore()
    store.add_chat(CID, {1, 2})
    book = ChatBook(store, 5.0)
    book.advanced(CID, ChatState(3, 0, 7))  # not loaded (e.g. revoked meanwhile): not kept
    book.recorded(CID, 3)
    assert (book.state(CID), book.counted(CID)) == (ChatState(), None)
    await book.ensure([CID])
    book.advanced(CID, ChatState(3, 0, 7))
    assert book.counted(CID) == 0
    book.recorded(CID, 3)
    assert (book.state(CID), book.counted(CID)) == (ChatState(3, 0, 7), 3)
    book.forget_partitions([0])
    assert book.counted(CID) is None


async def test_a_chat_without_a_seq_is_forgotten_with_any_revoked_partition() -> None:
    """Its state names no partition (-1): it stayed, stale, after its partition was
    revoked, until a write found its seqs taken (found in review)."""
    store = MemoryStore()
    store.add_chat(CID, {1, 2})
    book = ChatBook(store, 5.0)
    await book.ensure([CID])
    assert book.state(CID).partition == -1 and book.counted(CID) == 0
    book.forget_partitions([5])
    assert book.counted(CID) is None


async def test_repeats_above_a_stale_state_are_read_again_and_counted() -> None:
    """Another writer stored seqs 3..5 and died before counting them; this worker still
    holds the chat at 2 and gets the records again: it reads the chat again and counts."""
    w = World()
    await w.persister.persist([rec(0), rec(1)])
    w.store.crash_after = "append"
    with pytest.raises(Crash):
        await w.restarted().persister.persist([rec(2), rec(3), rec(4)])

    await w.persister.persist([rec(2), rec(3), rec(4)])

    assert list(w.store.seqs(CID)) == [1, 2, 3, 4, 5]
    assert w.store.chats[CID].chat.last_seq == 5
    assert [s for _, s, _ in w.events()][-3:] == [3, 4, 5]


async def test_copies_of_a_new_message_need_no_second_read_of_their_chat() -> None:
    w = World()
    await w.persister.persist([rec(0)])
    reads = w.store.calls.count("chats_for_writing")

    outcome = await w.persister.persist(
        [rec(1), rec(2, text="m1", mid=1), rec(3), rec(4, text="m3", mid=3)]
    )

    assert (outcome.stored, outcome.duplicates) == (2, 2)
    assert w.store.seqs(CID) == dict(zip([1, 2, 3], ids(0, 1, 3), strict=True))
    assert w.store.calls.count("chats_for_writing") == reads


class RevokingStore(MemoryStore):
    """The partition is revoked (and the chats forgotten) during the first look-up."""

    book: ChatBook | None = None

    async def known(self, ids: Collection[str]) -> dict[str, Known]:
        if self.book is not None:
            self.book.forget_partitions([0])
            self.book = None
        return await super().known(ids)


async def test_a_chat_forgotten_between_rounds_is_read_again_before_it_is_planned() -> None:
    store = RevokingStore()
    store.add_chat(CID, {1, 2})
    store.add_chat(OTHER, {1, 2})
    w = World(store)
    await w.persister.persist([rec(0), rec(1, cid=OTHER)])
    store.book = w.book  # OTHER's redelivered record is looked up; meanwhile the revoke

    await w.persister.persist([rec(1, cid=OTHER), rec(2)])

    assert w.store.seqs(CID) == dict(zip([1, 2], ids(0, 2), strict=True))
    assert "retract" not in w.store.calls  # CID was never planned from seq 1


class RacingStore(MemoryStore):
    """Another writer stores two messages, the second under a left-over id entry it
    points at its own seq, between this worker's look-up and its reclaim."""

    def __init__(self) -> None:
        super().__init__()
        self.theirs: list[StoredMessage] = []

    async def reclaim(self, entries: Sequence[IdEntry], was: Mapping[str, int]) -> set[str]:
        for m in self.theirs:
            self.ids[m.id] = IdEntry(m.id, m.cid, m.seq, m.uid, text_digest(m.text), 0, m.offset)
            self.messages[(m.cid, m.seq)] = m
        self.theirs = []
        return await super().reclaim(entries, was)


async def test_an_entry_another_writer_moved_meanwhile_is_not_overwritten() -> None:
    store = RacingStore()
    store.add_chat(CID, {1, 2})
    w = World(store)
    await w.persister.persist([rec(0)])
    mid, other = ids(1)[0], f"{500:024x}"
    store.ids[mid] = IdEntry(mid, CID, 9, 1, text_digest("m1"), 0, 1)  # left over
    store.theirs = [
        StoredMessage(CID, 2, other, 2, "theirs", NOW, 5.0, 0, 0),
        StoredMessage(CID, 3, mid, 1, "m1", NOW, 5.0, 0, 1),
    ]

    outcome = await w.persister.persist([rec(1)])

    assert w.store.seqs(CID) == {1: ids(0)[0], 2: other, 3: mid}  # once, where it was put
    assert w.store.ids[mid].seq == 3 and outcome.duplicates == 1


async def test_an_id_conflict_is_dead_lettered_once_when_a_round_starts_over() -> None:
    store = RivalStore(rivals=0)
    store.add_chat(CID, {1, 2})
    store.add_chat(OTHER, {1, 2})
    w = World(store)
    await w.persister.persist([rec(0)])
    store.rivals = 1  # OTHER's first seq is taken: the batch is planned again

    outcome = await w.persister.persist([rec(5, cid=OTHER), rec(6, cid=OTHER, text="x", mid=0)])

    assert [r.record.offset for r in w.outbox.dead] == [6] and outcome.dead_lettered == 1
    assert w.metrics.id_conflicts._value.get() == 1


class RefusingAdvanceStore(MemoryStore):
    """The store refuses the first chat update for good (not a transient failure)."""

    refuse = True

    async def advance(self, updates: Sequence[ChatAdvance]) -> None:
        if self.refuse:
            self.refuse = False
            raise StoreRefused("refused by MongoDB: code 2: bad update")
        await super().advance(updates)


async def test_an_id_conflict_is_dead_lettered_once_when_settling_fails_and_the_batch_halves() -> (
    None
):
    store = RefusingAdvanceStore()
    store.add_chat(CID, {1, 2})
    store.add_chat(OTHER, {1, 2})
    w = World(store)
    store.refuse = False
    await w.persister.persist([rec(0)])
    store.refuse = True

    await w.persister.persist([rec(1), rec(2, cid=OTHER, text="x", mid=0)])

    assert [r.record.offset for r in w.outbox.dead] == [2]
    assert w.store.seqs(CID) == dict(zip([1, 2], ids(0, 1), strict=True))
    assert w.store.chats[CID].chat.last_seq == 2


async def test_a_message_stored_above_a_hole_is_counted_when_the_hole_is_filled() -> None:
    """A worker died inside an unordered insert: seq 4 stored, seq 3 not (its id entry
    was claimed). The redelivery stores 3 and counts 4 with it, stamped at that moment,
    so 4's event never goes out while 4 is hidden."""
    w = World()
    await w.persister.persist([rec(0), rec(1)])
    w.store.ids[ids(2)[0]] = IdEntry(ids(2)[0], CID, 3, 1, text_digest("m2"), 0, 2)
    w.store.ids[ids(3)[0]] = IdEntry(ids(3)[0], CID, 4, 1, text_digest("m3"), 0, 3)
    w.store.messages[(CID, 4)] = StoredMessage(CID, 4, ids(3)[0], 1, "m3", NOW, 1.0, 0, 3)
    again = w.restarted()
    again.clock.now += 60

    await again.persister.persist([rec(2), rec(3)])

    assert w.store.seqs(CID) == dict(zip(range(1, 5), ids(0, 1, 2, 3), strict=True))
    chat = w.store.chats[CID].chat
    assert (chat.last_seq, chat.last_message and chat.last_message.text) == (4, "m3")
    assert w.store.messages[(CID, 4)].at == w.store.messages[(CID, 3)].at == chat.last_at
    assert [s for _, s, _ in again.events()] == [3, 4]


async def test_a_store_refusing_the_membership_read_is_waited_out_not_raised() -> None:
    """PostgreSQL gone behind FerretDB: reading a chat by its id is refused (no transient
    code). That escaped `sort` and crashed the agent, which faust restarted, dropping the
    batch in hand and the one being written; it is now retried like an outage."""
    w = World()
    real = w.store.chats_for_writing
    refusals = [StoreRefused("backend: connection refused")] * 2

    async def refusing(cids: Collection[str]) -> Any:
        if refusals:
            raise refusals.pop()
        return await real(cids)

    w.store.chats_for_writing = refusing  # type: ignore[method-assign]
    seen = []

    async def watching(delay: float) -> None:
        seen.append((await w.health.check()).status)
        await Sleeps.__call__(w.sleeps, delay)

    w.persister._sleep = watching
    outcome = await w.persister.persist([rec(0), rec(1)])
    assert (outcome.stored, outcome.dead_lettered) == (2, 0) and w.outbox.dead == []
    assert seen == [Status.CRITICAL, Status.CRITICAL]
