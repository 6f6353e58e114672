"""ChatService (the internal API's use cases) over the in-memory store (tests/support)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from contracts.errors import ErrorCode
from contracts.events import ChatCreated, ChatRead, MembersAdded
from dialogue_worker.domain.chat_list import ListCursor
from dialogue_worker.domain.chats import PENDING_MOST
from dialogue_worker.domain.history import Direction, HistoryQuery
from dialogue_worker.domain.sequencing import text_digest
from dialogue_worker.errors import OutboxUnavailable, RequestError, StorageUnavailable
from dialogue_worker.services import chats as chats_service
from dialogue_worker.services.chats import CURSOR_AHEAD, CURSOR_TTL, ChatService
from dialogue_worker.services.ports import Event, IdEntry, StoredMessage
from tests.support.waiting import eventually, settle
from tests.support.worker_fakes import MemoryOutbox, MemoryStore


class Clock:
    now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[ChatService, MemoryStore, MemoryOutbox, Clock]:
    store, outbox, clock = MemoryStore(), MemoryOutbox(), Clock()
    return ChatService(store, outbox, clock), store, outbox, clock


def post(store: MemoryStore, cid: str, n: int, at: float) -> None:
    """n messages appended to the chat's history, stored at `at` (as the agent would)."""
    row = store.chats[cid]
    for _ in range(n):
        seq = row.chat.last_seq + 1
        mid = f"{len(store.messages) + 1:024x}"
        store.messages[(cid, seq)] = StoredMessage(
            cid, seq, mid, 1, f"m{seq}", 1_700_000_000, at, 0, seq
        )
        store.ids[mid] = IdEntry(mid, cid, seq, 1, text_digest(f"m{seq}"), 0, seq)
        row.chat = row.chat.__class__(
            cid, row.chat.users, row.chat.created_at, row.chat.opened_at, seq, at
        )


async def expect(code: ErrorCode, pending: object) -> None:
    with pytest.raises(RequestError) as err:
        await pending  # type: ignore[misc]
    assert err.value.code is code


async def test_create_get_add_members_and_their_events() -> None:
    service, _, outbox, _ = make()
    chat = await service.create([2, 1])
    assert chat.users == [1, 2] and chat.createdAt == 1_700_000_000 and chat.lastSeq == 0
    assert (await service.get(chat.id, 2)) == chat

    grown = await service.add_members(chat.id, 1, [5, 2])
    assert grown.users == [1, 2, 5]
    assert [type(e) for e in outbox.events] == [ChatCreated, MembersAdded]
    added = outbox.events[1]
    assert isinstance(added, MembersAdded) and added.users == [5, 2] and added.members == [1, 2, 5]
    # A retry whose first try was stored but not published publishes (again).
    outbox.fail_next = 1
    await expect(ErrorCode.BUS_UNAVAILABLE, service.add_members(chat.id, 1, [8]))
    again = await service.add_members(chat.id, 1, [8])
    assert again.users == [1, 2, 5, 8]
    retried = outbox.events[-1]
    assert isinstance(retried, MembersAdded) and retried.users == [8]
    assert retried.members == [1, 2, 5, 8]

    await expect(ErrorCode.NOT_MEMBER, service.add_members(chat.id, 9, [9]))
    await expect(ErrorCode.NOT_FOUND, service.add_members("f" * 24, 1, [9]))
    await expect(ErrorCode.NOT_MEMBER, service.get(chat.id, 7))
    await expect(ErrorCode.TOO_FEW_USERS, service.create([4, 4]))


async def test_members_past_the_limit_are_refused_whole_and_publish_nothing() -> None:
    store, outbox = MemoryStore(), MemoryOutbox()
    service = ChatService(store, outbox, Clock(), max_members=4)
    chat = await service.create([1, 2])
    with pytest.raises(RequestError) as err:
        await service.add_members(chat.id, 1, [3, 4, 5])
    assert err.value.code is ErrorCode.CHAT_FULL and err.value.code.status == 409
    assert "at most 4 members: this one has 2, and 3 of these users" in err.value.message
    assert (await service.get(chat.id, 1)).users == [1, 2]  # nothing added
    assert [type(e) for e in outbox.events] == [ChatCreated]
    # Up to the limit is fine, and naming members again adds nobody past it.
    assert (await service.add_members(chat.id, 1, [3, 4])).users == [1, 2, 3, 4]
    assert (await service.add_members(chat.id, 2, [4, 1])).users == [1, 2, 3, 4]
    await expect(ErrorCode.CHAT_FULL, service.add_members(chat.id, 1, [4, 5]))
    # A non-member still learns that first.
    await expect(ErrorCode.NOT_MEMBER, service.add_members(chat.id, 9, [9]))


async def test_a_caller_added_while_their_own_add_was_refused_gets_the_add_through() -> None:
    """The store refused the add (not a member yet), then another member's request added
    the caller before the check that tells 4040 from 4031: that answered 4040 for a chat
    that exists."""
    service, store, outbox, _ = make()
    chat = await service.create([1, 2])
    refuse = store.add_members

    async def added_meanwhile(cid: str, member: int, users: list[int], most: int) -> object:
        result = await refuse(cid, member, users, most)
        if result is None and member == 9:
            await refuse(cid, 1, [9], most)  # the other request lands in between
        return result

    store.add_members = added_meanwhile  # type: ignore[method-assign]
    grown = await service.add_members(chat.id, 9, [7])
    assert grown.users == [1, 2, 7, 9]
    assert isinstance(outbox.events[-1], MembersAdded) and outbox.events[-1].users == [7]


async def test_history_pages_by_seq_and_by_message_id_both_ways() -> None:
    service, store, _, _ = make()
    chat = await service.create([1, 2])
    post(store, chat.id, 250, at=5.0)

    newest = await service.messages(2, chat.id, HistoryQuery(3))
    assert [m.seq for m in newest.data] == [250, 249, 248]
    older = await service.messages(2, chat.id, HistoryQuery(3, newest.nextCursor))
    assert [m.seq for m in older.data] == [247, 246, 245]
    by_seq = await service.messages(2, chat.id, HistoryQuery(200, 101))
    assert [m.seq for m in by_seq.data] == list(range(100, 0, -1)) and by_seq.nextCursor is None
    forward = await service.messages(2, chat.id, HistoryQuery(3, 0, Direction.NEWER))
    assert [m.seq for m in forward.data] == [3, 2, 1]
    assert forward.nextCursor == forward.data[0].id
    end = await service.messages(2, chat.id, HistoryQuery(3, 248, Direction.NEWER))
    assert [m.seq for m in end.data] == [250, 249] and end.nextCursor is None

    await expect(ErrorCode.BAD_PAGING, service.messages(2, chat.id, HistoryQuery(3, "a" * 24)))
    await expect(ErrorCode.NOT_MEMBER, service.messages(3, chat.id, HistoryQuery(50)))
    await expect(ErrorCode.NOT_FOUND, service.messages(1, "a" * 24, HistoryQuery(50)))


async def test_a_message_shows_once_its_chat_counts_it_whichever_way_a_client_pages() -> None:
    """Seq 31 is stored but not counted (its batch in flight, or its worker died before
    counting it): no read shows it, and every page's nextCursor agrees with that."""
    service, store, _, _ = make()
    chat = await service.create([1, 2])
    post(store, chat.id, 30, at=5.0)
    store.messages[(chat.id, 31)] = StoredMessage(chat.id, 31, "f" * 24, 1, "x", 1, 6.0, 0, 31)

    newest = await service.messages(2, chat.id, HistoryQuery(5))
    assert [m.seq for m in newest.data] == [30, 29, 28, 27, 26]
    below = await service.messages(2, chat.id, HistoryQuery(5, 32))
    assert [m.seq for m in below.data] == [30, 29, 28, 27, 26]
    forward = await service.messages(2, chat.id, HistoryQuery(10, 24, Direction.NEWER))
    assert [m.seq for m in forward.data] == [30, 29, 28, 27, 26, 25] and forward.nextCursor is None
    upto = await service.messages(2, chat.id, HistoryQuery(3, 25, Direction.NEWER))
    assert [m.seq for m in upto.data] == [28, 27, 26] and upto.nextCursor is not None
    last = await service.messages(2, chat.id, HistoryQuery(3, 28, Direction.NEWER))
    assert [m.seq for m in last.data] == [30, 29] and last.nextCursor is None

    row = store.chats[chat.id]
    row.chat = row.chat.__class__(chat.id, row.chat.users, row.chat.created_at, 1.0, 31, 6.0)
    shown = await service.messages(2, chat.id, HistoryQuery(2))
    assert [m.seq for m in shown.data] == [31, 30]


async def test_read_markers_only_move_forward_clamped_to_the_newest_seq() -> None:
    service, store, outbox, _ = make()
    chat = await service.create([1, 2])
    post(store, chat.id, 10, at=5.0)

    marker = await service.mark_read(chat.id, 2, 4)
    assert (marker.seq, marker.unread) == (4, 6)
    assert (await service.mark_read(chat.id, 2, 2)).seq == 4  # never back
    assert (await service.mark_read(chat.id, 2, 99)).seq == 10  # clamped
    assert (await service.get(chat.id, 2)).unread == 0
    assert (await service.get(chat.id, 1)).unread == 10  # per user
    outbox.fail_next = 1  # the marker moves, its event is not published: a 5031
    await expect(ErrorCode.BUS_UNAVAILABLE, service.mark_read(chat.id, 1, 7))
    assert (await service.mark_read(chat.id, 1, 7)).seq == 7  # the client's retry
    reads = [e for e in outbox.events if isinstance(e, ChatRead)]
    # Moves are published, and a retry of the same marker; a stale one is not.
    assert [(e.uid, e.seq) for e in reads] == [(2, 4), (2, 10), (1, 7)]
    await expect(ErrorCode.NOT_MEMBER, service.mark_read(chat.id, 3, 1))


async def test_a_chat_whose_event_kafka_does_not_take_is_removed_and_answered_5031() -> None:
    """A retry of POST /chats creates another chat: the first, unannounced, must not stay
    in its members' lists."""
    service, store, outbox, _ = make()
    outbox.fail_next = 1
    await expect(ErrorCode.BUS_UNAVAILABLE, service.create([1, 2]))
    assert store.chats == {} and outbox.events == []
    assert (await service.chats_of(1, 10, None)).data == []


async def test_a_new_chat_whose_removal_fails_once_is_still_removed_and_answered_5031(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Kafka and then MongoDB failing: the removal's failure took the answer's place
    (5030, storage unavailable) and the chat stayed, unannounced (found in review)."""
    service, store, outbox, _ = make()
    outbox.fail_next = 1
    store.fail_next["remove_chat"] = 1
    await expect(ErrorCode.BUS_UNAVAILABLE, service.create([1, 2]))
    assert store.chats == {} and outbox.events == []
    # When the store keeps failing, the chat stays: the answer is still the 5031, and
    # the chat left without its event is logged.
    outbox.fail_next = 1
    store.fail_next["remove_chat"] = 10**6
    await expect(ErrorCode.BUS_UNAVAILABLE, service.create([1, 3]))
    (left,) = store.chats
    assert f"chat {left} stays stored without its chat.created event" in caplog.text


async def test_a_publish_that_hangs_is_cut_short_and_answered_5031() -> None:
    """aiokafka waits up to its request timeout (40 s) for a broker that is away; the
    gateway gives a worker 2 s and took the silence for a dead worker."""
    store, outbox = MemoryStore(), MemoryOutbox()
    service = ChatService(store, outbox, Clock(), publish_timeout=0.05)
    chat = await service.create([1, 2])
    outbox.stalled = True
    await expect(ErrorCode.BUS_UNAVAILABLE, service.mark_read(chat.id, 1, 0))
    await expect(ErrorCode.BUS_UNAVAILABLE, service.add_members(chat.id, 1, [3]))
    await expect(ErrorCode.BUS_UNAVAILABLE, service.create([1, 2]))
    assert list(store.chats) == [chat.id] and (await service.get(chat.id, 3)).users == [1, 2, 3]


async def test_the_chat_list_is_ordered_by_activity_and_pages_exactly_while_chats_move() -> None:
    service, store, _, clock = make()
    chats = []
    for i in range(30):
        clock.now = 100.0 + i  # created one second apart
        chats.append((await service.create([1, 2 + i])).id)
    for i, cid in enumerate(chats):
        post(store, cid, 1, at=200.0 + (i * 7) % 30)  # activity in a shuffled order
    clock.now = 300.0
    seen: list[str] = []
    page = await service.chats_of(1, 10, None)
    seen += [c.id for c in page.data]
    order = [c.id for c in page.data]
    assert order == sorted(order, key=lambda cid: -store.chats[cid].chat.activity)

    while page.nextCursor:
        # Between pages, chats on pages not yet read and already read get new messages,
        # and a new chat appears: none may be skipped or repeated.
        clock.now += 1
        post(store, chats[len(seen) % 30], 2, at=clock.now)
        post(store, seen[0], 1, at=clock.now)
        await service.create([1, 99])
        page = await service.chats_of(1, 10, ListCursor.decode(page.nextCursor))
        seen += [c.id for c in page.data]

    assert sorted(seen) == sorted(chats) and len(seen) == 30
    fresh = await service.chats_of(1, 50, None)  # a new first page shows the moves
    assert fresh.data[0].id in (seen[0], chats[0]) or fresh.data[0].users == [1, 99]


@pytest.mark.parametrize("count", [5, 6, 9])
async def test_a_stream_follows_the_most_active_chats_up_to_the_bound(
    count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chats_service, "FOLLOW_MAX", 6)
    service, store, _, clock = make()
    chats = []
    for i in range(count):
        clock.now = 100.0 + i
        chats.append((await service.create([1, 2 + i])).id)
    for i, cid in enumerate(chats):
        post(store, cid, i % 3 + 1, at=200.0 + (i * 5) % count)  # shuffled activity
    await service.create([2, 3])  # not the user's
    clock.now = 300.0

    followed = await service.followed(1)
    # Most active first; ties (every chat at 5) by id, highest first, as the chat list.
    ranked = sorted(chats, key=lambda cid: (store.chats[cid].chat.activity, cid), reverse=True)
    listed = await service.chats_of(1, 50, None)
    assert [c.id for c in listed.data] == ranked
    assert list(followed.data) == ranked[:6]
    assert followed.data == {cid: store.chats[cid].chat.last_seq for cid in ranked[:6]}
    assert followed.more is (count > 6)


async def test_a_failed_look_back_fails_the_listing_and_starts_no_more() -> None:
    service, store, _, clock = make()
    chats = [(await service.create([1, 2 + i])).id for i in range(20)]
    for cid in chats:
        post(store, cid, 1, at=clock.now)
    first = await service.chats_of(1, 5, None)
    assert first.nextCursor is not None
    for cid in chats:  # every chat moves after the listing began
        post(store, cid, 1, at=clock.now + 10)
    store.fail_next["activity_as_of"] = 1
    with pytest.raises(StorageUnavailable):
        await service.chats_of(1, 5, ListCursor.decode(first.nextCursor))
    assert store.calls.count("activity_as_of") == 1
    second = await service.chats_of(1, 5, ListCursor.decode(first.nextCursor))  # a retry
    assert store.calls.count("activity_as_of") == 21
    assert not {c.id for c in first.data} & {c.id for c in second.data}


async def test_a_cursor_older_than_a_listing_lasts_or_from_the_future_is_refused() -> None:
    """Each chat that moved since the snapshot costs a look-back: a made-up snapshot from
    long ago made a page cost thousands of reads."""
    service, _, _, clock = make()
    for i in range(3):
        await service.create([1, 2 + i])
    first = await service.chats_of(1, 1, None)
    assert first.nextCursor is not None
    cursor = ListCursor.decode(first.nextCursor)
    clock.now += CURSOR_TTL
    assert len((await service.chats_of(1, 1, cursor)).data) == 1  # still within its time
    clock.now += 1
    await expect(ErrorCode.BAD_PAGING, service.chats_of(1, 1, cursor))
    ahead = ListCursor(clock.now + CURSOR_AHEAD + 1, cursor.after)  # no worker's clock
    await expect(ErrorCode.BAD_PAGING, service.chats_of(1, 1, ahead))
    near = ListCursor(clock.now + CURSOR_AHEAD, cursor.after)  # another worker's clock
    assert (await service.chats_of(1, 1, near)).data is not None


async def test_unread_counts_in_the_list() -> None:
    service, store, _, clock = make()
    chat = await service.create([1, 2])
    post(store, chat.id, 5, at=clock.now)
    await service.mark_read(chat.id, 1, 3)
    [listed] = (await service.chats_of(1, 10, None)).data
    assert (listed.lastSeq, listed.readSeq, listed.unread) == (5, 3, 2)


class HeldOpen:
    """The store's open_chat, held until `release`: a chat stays pending meanwhile."""

    def __init__(self, store: MemoryStore) -> None:
        self.release = asyncio.Event()
        self._open = store.open_chat
        store.open_chat = self.open  # type: ignore[method-assign]

    async def open(self, cid: str, at: float) -> None:
        await self.release.wait()
        await self._open(cid, at)


async def test_a_chat_is_shown_to_nobody_until_its_creation_has_ended() -> None:
    """While a new chat's chat.created was being published, its other member could list
    it, post to it (the gateway's membership check read it) and be answered 202; when
    the publish then failed the chat was removed and the message dead-lettered (found in
    review). Until its creator's worker opens it, the chat is pending: no list shows it,
    and reads of it wait for the outcome."""
    service, store, _, _ = make()
    held = HeldOpen(store)
    creating = asyncio.create_task(service.create([1, 2]))
    await eventually(lambda: list(store.chats), what="the chat stored, pending")
    (cid,) = store.chats
    assert (await service.chats_of(2, 10, None)).data == []
    # followed, though: a stream opened now follows the chat it will not be told of again
    assert (await service.followed(2)).data == {cid: 0}
    reading = asyncio.create_task(service.get(cid, 2))  # as the gateway's membership check
    marking = asyncio.create_task(service.mark_read(cid, 2, 0))
    adding = asyncio.create_task(service.add_members(cid, 2, [3]))
    await settle()
    assert not (reading.done() or marking.done() or adding.done())
    held.release.set()
    chat = await creating
    assert (await reading).id == cid and (await marking).seq == 0
    assert (await adding).users == [1, 2, 3]
    assert [c.id for c in (await service.chats_of(2, 10, None)).data] == [chat.id]


class RefusedLater(MemoryOutbox):
    """Kafka refuses the publish, once `refuse` is set (until then it is in flight)."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse = asyncio.Event()

    async def publish(self, events: Sequence[Event]) -> None:
        await self.refuse.wait()
        raise OutboxUnavailable("broker down")


async def test_reads_of_a_chat_whose_creation_failed_find_nothing() -> None:
    store, outbox = MemoryStore(), RefusedLater()
    service = ChatService(store, outbox, Clock())
    creating = asyncio.create_task(service.create([1, 2]))
    await eventually(lambda: list(store.chats), what="the chat stored, pending")
    (cid,) = store.chats
    reading = asyncio.create_task(service.get(cid, 2))  # as the gateway's membership check
    history = asyncio.create_task(service.messages(2, cid, HistoryQuery(limit=10)))
    await settle()
    assert not (reading.done() or history.done())  # no member's yes for a chat that may go
    outbox.refuse.set()
    await expect(ErrorCode.BUS_UNAVAILABLE, creating)
    await expect(ErrorCode.NOT_FOUND, reading)
    await expect(ErrorCode.NOT_FOUND, history)
    assert store.chats == {}


async def test_a_chat_left_pending_by_a_dead_worker_is_found_by_nobody() -> None:
    store, outbox = MemoryStore(), MemoryOutbox()
    service = ChatService(store, outbox, Clock(), publish_timeout=0.01, settle_margin=0.05)
    HeldOpen(store)  # never released: as if the worker died before opening it
    creating = asyncio.create_task(service.create([1, 2]))
    await eventually(lambda: list(store.chats), what="the chat stored, pending")
    (cid,) = store.chats
    await expect(ErrorCode.NOT_FOUND, service.get(cid, 1))
    await expect(ErrorCode.NOT_FOUND, service.add_members(cid, 1, [3]))
    assert store.chats[cid].chat.users == frozenset({1, 2})  # nobody added
    creating.cancel()


async def test_a_chat_whose_opening_fails_is_answered_5030_and_stays_hidden() -> None:
    service, store, outbox, _ = make()
    store.fail_next["open_chat"] = 10**6
    with pytest.raises(StorageUnavailable):
        await service.create([1, 2])
    (cid,) = store.chats
    assert [type(e) for e in outbox.events] == [ChatCreated]  # its event is a phantom's
    assert (await service.chats_of(1, 10, None)).data == []
    assert store.chats[cid].chat.pending


async def test_a_pending_chat_is_waited_for_within_the_gateways_attempt() -> None:
    """API_PUBLISH_TIMEOUT may be set up to 60 s: a read of a chat left pending must not
    wait that long, or the gateway (2 s per attempt) takes the wait for a dead worker."""
    store, outbox = MemoryStore(), MemoryOutbox()
    service = ChatService(store, outbox, Clock(), publish_timeout=60.0)
    HeldOpen(store)  # never released
    creating = asyncio.create_task(service.create([1, 2]))
    await eventually(lambda: list(store.chats), what="the chat stored, pending")
    (cid,) = store.chats
    async with asyncio.timeout(30):  # a bound on a hang, not a figure
        await expect(ErrorCode.NOT_FOUND, service.get(cid, 1))
    creating.cancel()


async def test_a_chat_pending_past_its_creation_is_gone_at_once() -> None:
    """A chat whose worker died before opening it never opens: a read of it waited 1.5 s
    each time for its 4040, and the streams of its members followed it (found in
    review). Past PENDING_MOST it counts as removed."""
    service, store, _, clock = make()
    HeldOpen(store)  # never released
    creating = asyncio.create_task(service.create([1, 2]))
    await eventually(lambda: list(store.chats), what="the chat stored, pending")
    (cid,) = store.chats
    creating.cancel()
    clock.now += PENDING_MOST + 1
    reading = asyncio.create_task(service.get(cid, 1))
    await settle()
    assert reading.done()  # no wait
    await expect(ErrorCode.NOT_FOUND, reading)
    assert (await service.followed(1)).data == {}
