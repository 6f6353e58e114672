"""BatchPersister against hand-written fakes of MongoDB and the dead-letter topic."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence

import orjson

from contracts.records import MessageRecord
from dialogue_worker.domain.records import InboundRecord, Rejected, RejectKind
from dialogue_worker.errors import DeadLetterUnavailable, StorageUnavailable
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.health import Status, WorkerHealth
from dialogue_worker.services.membership import MembershipCache
from dialogue_worker.services.persistence import BatchPersister
from dialogue_worker.services.ports import InsertOutcome
from platform_common.retry import Backoff

CID = "65f0c0ffee0000000000beef"


class FakeStore:
    """Messages by id and chat members; fails the next `fail_writes` inserts."""

    def __init__(self, chats: dict[str, frozenset[int]]) -> None:
        self.chats = chats
        self.messages: dict[str, MessageRecord] = {}
        self.fail_writes = 0
        self.member_lookups: list[set[str]] = []
        self.up = True

    async def insert_messages(self, messages: Sequence[MessageRecord]) -> InsertOutcome:
        if self.fail_writes:
            self.fail_writes -= 1
            raise StorageUnavailable("connection refused")
        new = [m for m in messages if m.id not in self.messages]
        self.messages.update({m.id: m for m in new})
        return InsertOutcome(len(new), len(messages) - len(new))

    def unstorable(self, message: MessageRecord) -> str | None:
        return None

    async def writable(self) -> None:
        if not self.up:
            raise StorageUnavailable("down")

    async def chat_members(self, cids: Collection[str]) -> dict[str, frozenset[int]]:
        self.member_lookups.append(set(cids))
        return {c: self.chats[c] for c in cids if c in self.chats}

    async def ping(self) -> None:
        if not self.up:
            raise StorageUnavailable("down")


class FakeDeadLetters:
    def __init__(self) -> None:
        self.sent: list[Rejected] = []
        self.fail_sends = 0

    async def send(self, rejected: Sequence[Rejected]) -> None:
        if self.fail_sends:
            self.fail_sends -= 1
            raise DeadLetterUnavailable("broker down")
        self.sent.extend(rejected)


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


def rec(offset: int, uid: int, text: str = "hi", partition: int = 0) -> InboundRecord:
    value = {"v": 1, "id": f"{offset + 1:024x}", "cid": CID, "uid": uid, "text": text}
    raw = orjson.dumps(value | {"createdAt": 1_700_000_000})
    return InboundRecord("msgs", partition, offset, CID.encode(), raw)


def make(
    store: FakeStore, dlq: FakeDeadLetters
) -> tuple[BatchPersister, WorkerHealth, Sleeps, WorkerMetrics]:
    clock = Clock()
    sleeps = Sleeps(clock)
    metrics = WorkerMetrics()
    health = WorkerHealth(store.ping, dict, stall_after=30, clock=clock)
    persister = BatchPersister(
        store,
        dlq,
        MembershipCache(5.0, clock),
        health,
        metrics,
        backoff=lambda: Backoff(0.1, 0.4, jitter=0.0),
        sleep=sleeps,
        clock=clock,
    )
    return persister, health, sleeps, metrics


async def test_valid_records_stored_once_even_when_redelivered() -> None:
    store, dlq = FakeStore({CID: frozenset({1, 2})}), FakeDeadLetters()
    persister, _, _, metrics = make(store, dlq)
    batch = [rec(i, 1 + i % 2) for i in range(10)]

    first = await persister.persist(batch)
    again = await persister.persist(batch)

    assert (first.stored, first.duplicates, again.stored, again.duplicates) == (10, 0, 0, 10)
    assert len(store.messages) == 10 and dlq.sent == []
    assert persister.next_offsets == {("msgs", 0): 10}
    assert metrics.persisted._value.get() == 10


async def test_a_batch_sorted_ahead_is_stored_and_dead_lettered_the_same_way() -> None:
    store, dlq = FakeStore({CID: frozenset({1, 2})}), FakeDeadLetters()
    persister, _, _, _ = make(store, dlq)
    batch = [rec(0, 1), rec(1, 9), rec(2, 2)]

    sorted_batch = await persister.sort(batch)  # what the agent does during the prior write
    assert store.messages == {} and dlq.sent == []  # sorting stores nothing
    outcome = await persister.persist(batch, sorted_batch)

    assert (outcome.stored, outcome.dead_lettered) == (2, 1)
    assert [r.kind for r in dlq.sent] == [RejectKind.NOT_MEMBER]
    assert persister.next_offsets == {("msgs", 0): 3}


async def test_invalid_and_non_member_records_are_dead_lettered_with_reasons() -> None:
    store, dlq = FakeStore({CID: frozenset({1, 2})}), FakeDeadLetters()
    persister, _, _, metrics = make(store, dlq)
    bad_json = InboundRecord("msgs", 0, 3, None, b"{nope")

    outcome = await persister.persist([rec(0, 1), rec(1, 9), rec(2, 2, text=" "), bad_json])

    assert outcome.stored == 1 and outcome.dead_lettered == 3
    assert {r.record.offset: r.kind for r in dlq.sent} == {
        1: RejectKind.NOT_MEMBER,
        2: RejectKind.INVALID,
        3: RejectKind.INVALID,
    }
    assert metrics.dead_letters.labels("invalid")._value.get() == 2


async def test_write_failures_are_retried_with_backoff_and_reported() -> None:
    store, dlq = FakeStore({CID: frozenset({1})}), FakeDeadLetters()
    persister, health, sleeps, _ = make(store, dlq)
    store.fail_writes = 4
    states = []

    async def sleep_and_look(delay: float) -> None:
        states.append(await health.check())
        await Sleeps.__call__(sleeps, delay)

    persister._sleep = sleep_and_look
    outcome = await persister.persist([rec(0, 1)])

    assert outcome.stored == 1
    assert sleeps.delays == [0.1, 0.2, 0.4, 0.4]
    assert {s.status for s in states} == {Status.CRITICAL}
    assert "connection refused" in (states[0].reason or "")
    assert (await health.check()).status is Status.PASSING


async def test_dead_letter_failure_retries_only_the_dead_letter_step() -> None:
    store, dlq = FakeStore({CID: frozenset({1})}), FakeDeadLetters()
    persister, _, sleeps, _ = make(store, dlq)
    dlq.fail_sends = 2

    outcome = await persister.persist([rec(0, 1), rec(1, 5)])

    assert outcome.stored == 1 and len(dlq.sent) == 1 and len(sleeps.delays) == 2


async def test_cached_members_are_rechecked_before_a_rejection() -> None:
    store, dlq = FakeStore({CID: frozenset({1})}), FakeDeadLetters()
    persister, _, _, _ = make(store, dlq)
    await persister.persist([rec(0, 1)])
    store.chats[CID] = frozenset({1, 7})  # user 7 added a moment ago

    outcome = await persister.persist([rec(1, 1), rec(2, 7)])

    assert outcome.stored == 2 and dlq.sent == []
    assert store.member_lookups == [{CID}, {CID}]  # second lookup only because of user 7


class GatedStore(FakeStore):
    def __init__(self, chats: dict[str, frozenset[int]]) -> None:
        super().__init__(chats)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def insert_messages(self, messages: Sequence[MessageRecord]) -> InsertOutcome:
        self.entered.set()
        await self.release.wait()
        return await super().insert_messages(messages)


async def test_drain_finishes_the_batch_in_hand_then_takes_no_more() -> None:
    store, dlq = GatedStore({CID: frozenset({1})}), FakeDeadLetters()
    persister, _, _, _ = make(store, dlq)
    in_hand = asyncio.create_task(persister.persist([rec(0, 1)]))
    await store.entered.wait()

    draining = asyncio.create_task(persister.drain(30))
    await asyncio.sleep(0)
    assert not draining.done()
    store.release.set()

    assert (await in_hand).stored == 1
    assert await draining is True
    next_batch = asyncio.create_task(persister.persist([rec(1, 1)]))
    done, _ = await asyncio.wait({next_batch}, timeout=0.05)
    assert not done and len(store.messages) == 1
    next_batch.cancel()


class PickyStore(FakeStore):
    """Raises a non-transient error for any batch holding a "poison" text (as an encoder
    would), and refuses "refused" texts one by one (as a server's write errors would)."""

    def __init__(self, chats: dict[str, frozenset[int]]) -> None:
        super().__init__(chats)
        self.calls: list[int] = []
        self.refuse_all = False

    async def insert_messages(self, messages: Sequence[MessageRecord]) -> InsertOutcome:
        self.calls.append(len(messages))
        if any("poison" in m.text for m in messages):
            raise OverflowError("MongoDB can only handle up to 8-byte ints")
        refused = {
            i: (RejectKind.UNSTORABLE, "refused by MongoDB: code 2")
            for i, m in enumerate(messages)
            if "refused" in m.text or self.refuse_all
        }
        taken = [m for i, m in enumerate(messages) if i not in refused]
        outcome = await super().insert_messages(taken)
        return InsertOutcome(outcome.inserted, outcome.duplicates, refused)


async def test_a_record_the_store_cannot_take_is_found_by_halving_and_dead_lettered() -> None:
    store, dlq = PickyStore({CID: frozenset({1})}), FakeDeadLetters()
    persister, _, sleeps, metrics = make(store, dlq)
    batch = [rec(i, 1, text="poison" if i == 5 else f"m{i}") for i in range(8)]

    outcome = await persister.persist(batch)

    assert (outcome.stored, outcome.dead_lettered) == (7, 1)
    assert [(r.record.offset, r.kind) for r in dlq.sent] == [(5, RejectKind.UNSTORABLE)]
    assert "OverflowError" in dlq.sent[0].reason
    # halves down to the record (offset 5), which is tried alone once more
    assert store.calls == [8, 4, 4, 2, 1, 1, 1, 2]
    assert sleeps.delays == [] and persister.next_offsets == {("msgs", 0): 8}
    assert metrics.dead_letters.labels("unstorable")._value.get() == 1


async def test_records_refused_one_by_one_are_tried_alone_then_dead_lettered() -> None:
    store, dlq = PickyStore({CID: frozenset({1})}), FakeDeadLetters()
    persister, _, _, _ = make(store, dlq)

    outcome = await persister.persist([rec(0, 1), rec(1, 1, text="refused"), rec(2, 1)])

    assert (outcome.stored, outcome.dead_lettered) == (2, 1)
    assert [r.record.offset for r in dlq.sent] == [1] and "code 2" in dlq.sent[0].reason


async def test_a_store_refusing_everything_while_unwritable_holds_the_batch() -> None:
    store, dlq = PickyStore({CID: frozenset({1})}), FakeDeadLetters()
    persister, health, sleeps, _ = make(store, dlq)
    store.refuse_all, store.up = True, False  # a backend outage behind a live front end
    seen = []

    async def recover_later(delay: float) -> None:
        seen.append((await health.check()).status)
        await Sleeps.__call__(sleeps, delay)
        if len(sleeps.delays) == 3:
            store.refuse_all, store.up = False, True

    persister._sleep = recover_later
    outcome = await persister.persist([rec(0, 1), rec(1, 1)])

    assert (outcome.stored, outcome.dead_lettered) == (2, 0) and dlq.sent == []
    assert len(sleeps.delays) == 3 and set(seen) == {Status.CRITICAL}


class ConflictStore(FakeStore):
    """Reports a stored id with a different text as an id conflict (as MongoStore does)."""

    async def insert_messages(self, messages: Sequence[MessageRecord]) -> InsertOutcome:
        refused = {
            i: (RejectKind.ID_CONFLICT, f"id {m.id} is already stored with another text")
            for i, m in enumerate(messages)
            if m.id in self.messages and self.messages[m.id].text != m.text
        }
        taken = [m for i, m in enumerate(messages) if i not in refused]
        outcome = await super().insert_messages(taken)
        return InsertOutcome(outcome.inserted, outcome.duplicates, refused)


async def test_an_id_stored_with_other_content_is_an_id_conflict_not_a_duplicate() -> None:
    store, dlq = ConflictStore({CID: frozenset({1})}), FakeDeadLetters()
    persister, _, _, metrics = make(store, dlq)
    await persister.persist([rec(0, 1, text="the real message")])

    outcome = await persister.persist([rec(0, 1, text="the real message"), rec(0, 1, text="x")])

    assert (outcome.stored, outcome.duplicates, outcome.dead_lettered) == (0, 1, 1)
    assert [r.kind for r in dlq.sent] == [RejectKind.ID_CONFLICT]
    assert store.messages[f"{1:024x}"].text == "the real message"
    assert metrics.id_conflicts._value.get() == 1
