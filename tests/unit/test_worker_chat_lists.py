"""The chat lists a worker keeps (dialogue_worker/services/chat_lists.py), checked as a
model against the in-memory store: whatever happens between two lists (chats created,
messages counted, markers moved, members added, forged and repeated events, writes and
their events landing while a list is being read, the store failing, entries dropped for
room, lists expiring), a list that starts after the events feed caught up equals what
the store holds. The real store and Kafka: tests/integration/test_worker_chat_lists.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import (
    ChatCreated,
    ChatRead,
    EventChat,
    EventMessage,
    MembersAdded,
    MessageCreated,
    decode_event,
)
from contracts.ids import new_id
from dialogue_worker.domain.chats import PENDING_MOST, ChatView, preview
from dialogue_worker.domain.messages import MessageView
from dialogue_worker.errors import RequestError, StorageUnavailable
from dialogue_worker.services.chat_lists import CHAT_ENTRIES, Change, ChatLists
from dialogue_worker.services.chats import ChatService
from dialogue_worker.services.ports import Event
from tests.support.waiting import eventually
from tests.support.worker_fakes import MemoryOutbox, MemoryStore

USERS = (1, 2, 3, 4)


class Feed:
    """The events topic as the worker reads it: `caught_up` hands over every event
    published so far (what the real feed's barrier waits for), unless `behind`."""

    def __init__(self, outbox: MemoryOutbox, lists: Callable[[], ChatLists]) -> None:
        self._outbox = outbox
        self._lists = lists
        self._read = 0
        self.behind = False

    def deliver(self) -> None:
        events = self._outbox.events
        while self._read < len(events):  # as the worker's feed decodes them
            self._lists().on_event(Change.of(events[self._read].to_bytes()))
            self._read += 1

    async def caught_up(self, within: float) -> bool:
        if self.behind:
            return False
        self.deliver()
        return True


class Store(MemoryStore):
    """The in-memory store, where a write (and its event) can land during a read."""

    def __init__(self) -> None:
        super().__init__()
        self.during: Callable[[], Awaitable[None]] | None = None
        self.before = True  # whether it lands before the read takes its answer

    async def _around(self, read: Awaitable[Any]) -> Any:
        during, self.during = self.during, None
        if during is not None and self.before:
            await during()
        found = await read
        if during is not None and not self.before:
            await during()
        return found

    async def chats_of(self, uid: int) -> list[ChatView]:
        return await self._around(super().chats_of(uid))  # type: ignore[no-any-return]

    async def get_chat(self, cid: str) -> ChatView | None:
        return await self._around(super().get_chat(cid))  # type: ignore[no-any-return]

    async def read_markers(self, uid: int) -> dict[str, int]:
        return await self._around(super().read_markers(uid))  # type: ignore[no-any-return]

    async def read_marker(self, cid: str, uid: int) -> int:
        return await self._around(super().read_marker(cid, uid))  # type: ignore[no-any-return]


class World:
    def __init__(self, most: int, stale_max: int) -> None:
        self.store, self.outbox = Store(), MemoryOutbox()
        self.now = 0.0
        self.feed = Feed(self.outbox, lambda: self.lists)
        self.lists = ChatLists(
            self.store, self.feed, most=most, ttl=60.0, clock=lambda: self.now,
            wall=lambda: 1_000.0 + self.now, stale_max=stale_max,
        )  # fmt: skip
        self.service = ChatService(self.store, self.outbox, lambda: 1_000.0 + self.now)
        self.chats: list[str] = []
        self.sent = 0

    def chat(self, index: int) -> str | None:
        return self.chats[index % len(self.chats)] if self.chats else None

    def publish(self, event: Event) -> None:
        self.outbox.events.append(event)

    def post(self, cid: str, n: int) -> None:
        """n messages counted in the chat, and their events (as the persister does)."""
        row = self.store.chats[cid]
        for _ in range(n):
            self.sent += 1
            seq, mid = row.chat.last_seq + 1, f"{self.sent:024x}"
            text = f"message {self.sent} " * 20
            at = 1_000.0 + self.now + self.sent / 1_000
            last = preview(mid, seq, 1, text, 1_000)
            row.chat = replace(row.chat, last_seq=seq, last_at=at, last_message=last)
            view = MessageView(mid, cid, 1, text, 1_000, seq)
            message = EventMessage.model_validate(view.to_api())
            self.publish(MessageCreated(cid=cid, seq=seq, message=message))

    async def apply(self, op: tuple[Any, ...]) -> None:
        kind, *args = op
        cid = self.chat(args[0]) if kind in ("post", "read", "add", "forge") else None
        if kind == "create":
            self.chats.append((await self.service.create(args[0])).id)
        elif kind == "post" and cid is not None:
            self.post(cid, args[1])
        elif kind == "read" and cid is not None:
            try:
                await self.service.mark_read(cid, args[1], args[2])
            except RequestError:  # not a member
                pass
        elif kind == "add" and cid is not None:
            member = min(self.store.chats[cid].chat.users)
            await self.service.add_members(cid, member, args[1])
        elif kind == "forge":
            self.forge(cid or new_id(), args[1], args[2])
        elif kind == "tick":
            self.now += args[0]
        elif kind == "fail":
            self.store.fail_next[args[0]] = 1

    def forge(self, cid: str, variant: int, uid: int) -> None:
        """Events no write stands behind: repeated, made up or about chats never stored."""
        if variant == 0:
            self.publish(ChatRead(cid=cid, uid=uid, seq=10**9))
        elif variant == 1:
            view = MessageView(f"{10**6 + self.sent:024x}", cid, uid, "forged", 1, 10**9)
            message = EventMessage.model_validate(view.to_api())
            self.publish(MessageCreated(cid=cid, seq=10**9, message=message))
        else:
            chat = ChatView(new_id(), frozenset({uid, 99}), 1, 1.0)
            self.publish(ChatCreated(cid=chat.id, chat=EventChat.model_validate(chat.to_api())))

    async def check(self, uid: int) -> None:
        chats, reads = await self.lists.lists(uid)
        stored = [row.chat for row in self.store.chats.values() if uid in row.chat.users]
        markers = {cid: seq for (cid, u), seq in self.store.reads.items() if u == uid}
        assert {c.id: c for c in chats} == {c.id: c for c in stored}
        assert len(chats) == len(stored)
        kept = {cid: seq for cid, seq in reads.items() if seq}
        assert kept == {cid: seq for cid, seq in markers.items() if seq}
        self.accounted()

    def accounted(self) -> None:
        """The kept lists' own bookkeeping agrees with what they hold (white-box: a drift
        would let memory grow past the bound, or drop users it need not)."""
        lists: Any = self.lists
        held: dict[str, int] = {}
        for user in lists._users.values():
            for cid in user.chats:
                held[cid] = held.get(cid, 0) + 1
        weights = sum(CHAT_ENTRIES + len(chat.users) for chat in lists._chats.values())
        assert lists.size == len(lists._users) + sum(held.values()) + weights
        assert held == lists._holders and set(held) == set(lists._chats) == set(lists._read_from)
        assert set(lists._changed) <= set(held)
        assert lists.size <= max(lists._most, 0) or any(u.users for u in lists._users.values())


members = st.lists(st.sampled_from((*USERS, 5, 6)), min_size=2, max_size=4, unique=True)
writes = st.one_of(
    st.tuples(st.just("create"), members),
    st.tuples(st.just("post"), st.integers(0, 20), st.integers(1, 3)),
    st.tuples(st.just("read"), st.integers(0, 20), st.sampled_from(USERS), st.integers(0, 9)),
    st.tuples(st.just("add"), st.integers(0, 20), members),
    st.tuples(st.just("forge"), st.integers(0, 20), st.integers(0, 2), st.sampled_from(USERS)),
)
steps = st.one_of(
    writes,
    st.tuples(st.just("tick"), st.sampled_from((1.0, 30.0, 61.0))),
    st.tuples(st.just("list"), st.sampled_from(USERS), writes, st.booleans()),
    st.tuples(st.just("pair"), st.sampled_from(USERS), st.sampled_from(USERS), writes),
    st.tuples(st.just("fail"), st.sampled_from(("get_chat", "chats_of"))),
    st.tuples(st.just("check"), st.sampled_from(USERS)),
)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(steps, max_size=40),
    st.sampled_from((0, 3, 12, 60, 10_000)),
    st.sampled_from((0, 1, 4, 32)),
)
def test_a_list_after_the_feed_caught_up_is_what_the_store_holds(
    ops: list[tuple[Any, ...]], most: int, stale_max: int
) -> None:
    async def run() -> None:
        world = World(most, stale_max)
        for op in [("create", [1, 2]), ("create", [1, 3, 4]), *ops]:
            if op[0] == "check":
                await world.check(op[1])
            elif op[0] == "list":  # a write and its event land while this list is read
                _, uid, write, before = op

                async def during(write: tuple[Any, ...] = write) -> None:
                    await world.apply(write)
                    world.feed.deliver()

                world.store.during, world.store.before = during, before
                try:
                    await world.lists.lists(uid)  # either side of the write: not checked
                except StorageUnavailable:
                    pass
                world.store.during = None
                await world.check(uid)  # the next one shows it
            elif op[0] == "pair":  # two lists at once, a write landing in the first read
                _, one, other, write = op

                async def between(write: tuple[Any, ...] = write) -> None:
                    await world.apply(write)
                    world.feed.deliver()

                world.store.during = between
                for outcome in await asyncio.gather(
                    world.lists.lists(one), world.lists.lists(other), return_exceptions=True
                ):
                    if isinstance(outcome, BaseException) and not isinstance(
                        outcome, StorageUnavailable
                    ):
                        raise outcome
                world.store.during = None
                await world.check(one)
                await world.check(other)
            else:
                await world.apply(op)
                if op[0] == "fail":  # the next read by this name fails, if it reads
                    with contextlib.suppress(StorageUnavailable):
                        await world.lists.lists(1)
                    world.store.fail_next.clear()
        for uid in USERS:
            await world.check(uid)

    try:
        asyncio.run(run())
    except AssertionError:
        print("EXAMPLE", most, stale_max, ops)
        raise


async def test_a_kept_list_reads_only_what_changed_and_the_feed_behind_reads_the_store() -> None:
    world = World(most=10_000, stale_max=32)
    for i in range(20):
        await world.apply(("create", [1, 10 + i]))
    await world.check(1)
    world.store.calls.clear()
    await world.check(1)
    assert world.store.calls == []  # nothing changed: nothing read

    world.post(world.chats[3], 2)
    await world.service.mark_read(world.chats[3], 1, 1)
    world.store.calls.clear()
    chats, _ = await world.lists.lists(1)
    assert world.store.calls == ["get_chat"]  # the one chat that changed, by key
    assert {c.id: c.last_seq for c in chats}[world.chats[3]] == 2

    world.feed.behind = True  # the feed cannot vouch: the store is read whole
    world.post(world.chats[4], 1)
    world.store.calls.clear()
    chats, _ = await world.lists.lists(1)
    assert world.store.calls == ["chats_of"]
    assert {c.id: c.last_seq for c in chats}[world.chats[4]] == 1


@pytest.mark.parametrize("whole", [False, True])
async def test_a_chat_told_of_while_pending_is_listed_once_opened(whole: bool) -> None:
    """A chat's chat.created is out before its creator's worker opens it: a list read
    meanwhile (by key, or whole) must not show it, nor forget it: no other event comes
    when it is opened, so it waited for the next whole read."""
    world = World(most=10_000, stale_max=32)
    await world.apply(("create", [2, 9]))
    await world.check(2)
    release = asyncio.Event()
    real_open = world.store.open_chat

    async def held_open(cid: str, at: float) -> None:
        await release.wait()
        await real_open(cid, at)

    world.store.open_chat = held_open  # type: ignore[method-assign]
    creating = asyncio.create_task(world.service.create([1, 2]))
    await eventually(
        lambda: [e for e in world.outbox.events if isinstance(e, ChatCreated)][1:],
        what="the chat.created out, the chat still pending",
    )
    if whole:
        world.now += 60.0  # the kept list's ttl: read whole (not yet abandoned)
    chats, _ = await world.lists.lists(2)
    assert [c.id for c in chats] == world.chats  # not the pending one
    release.set()
    world.chats.append((await creating).id)
    world.store.calls.clear()
    await world.check(2)
    assert "chats_of" not in world.store.calls  # by key: it stayed marked


async def test_a_chat_that_never_opens_is_forgotten_by_the_lists() -> None:
    """Marked again at every list while pending, a chat whose worker died before opening
    it cost a read by key at every list of each member for ever (found in review)."""
    world = World(most=10_000, stale_max=32)
    await world.apply(("create", [2, 9]))
    await world.check(2)

    async def never(cid: str, at: float) -> None:
        await asyncio.Event().wait()

    world.store.open_chat = never  # type: ignore[method-assign]
    creating = asyncio.create_task(world.service.create([1, 2]))
    await eventually(
        lambda: [e for e in world.outbox.events if isinstance(e, ChatCreated)][1:],
        what="the chat.created out, the chat pending",
    )
    await world.lists.lists(2)  # marked, read by key, still pending: marked again
    world.now += PENDING_MOST + 1
    await world.lists.lists(2)  # abandoned now: forgotten
    world.store.calls.clear()
    chats, _ = await world.lists.lists(2)
    assert world.store.calls == [] and [c.id for c in chats] == world.chats
    creating.cancel()


async def test_entries_stay_within_the_bound_and_a_list_past_it_is_read_each_time() -> None:
    world = World(most=30, stale_max=32)
    for i in range(12):
        await world.apply(("create", [1 + i % 4, 10 + i]))
    for uid in USERS:
        await world.check(uid)
        assert world.lists.size <= 30
    small = World(most=5, stale_max=32)
    for i in range(6):
        await small.apply(("create", [1, 10 + i]))
    for _ in range(2):
        small.store.calls.clear()
        await small.check(1)
        assert small.store.calls[0] == "chats_of"  # never kept: 6 chats are past 5 entries
    assert small.lists.size == 0


async def test_marks_past_the_bound_are_not_recorded_and_the_list_is_read_whole() -> None:
    world = World(most=10_000, stale_max=4)
    await world.apply(("create", [1, 2]))
    await world.check(1)
    for _ in range(100):  # forged: each names a chat of its own for user 1
        world.forge(new_id(), 2, 1)
    world.store.calls.clear()
    await world.check(1)
    assert world.store.calls == ["chats_of"]  # read whole, not 100 chats by key


async def test_what_a_failed_read_did_not_read_is_read_by_the_next_list() -> None:
    world = World(most=10_000, stale_max=32)
    await world.apply(("create", [1, 2]))
    await world.check(1)
    world.post(world.chats[0], 1)
    world.store.fail_next["get_chat"] = 1
    with pytest.raises(StorageUnavailable):
        await world.lists.lists(1)
    await world.check(1)  # the chat read again, not taken as read


async def test_a_list_read_whole_after_many_changes_is_kept_again_after() -> None:
    """Found by store_bench at 100k: a whole read left its chats marked stale, so every
    list after many changes was read whole again (30 ms instead of 2)."""
    world = World(most=10_000, stale_max=4)
    for i in range(10):
        await world.apply(("create", [1, 10 + i]))
    await world.check(1)
    for cid in world.chats:
        world.post(cid, 1)
    await world.check(1)  # read whole: 10 changes are past 4
    world.store.calls.clear()
    await world.check(1)
    assert world.store.calls == []


async def test_chats_that_changed_past_the_marks_while_a_list_was_read_are_read_again() -> None:
    """Found in review: with more changes during a whole read than stale_max, the read
    took every chat it read as fresh, also for the other users it keeps them for."""
    world = World(most=10_000, stale_max=2)
    for _ in range(3):
        await world.apply(("create", [1, 2]))
    await world.check(2)  # user 2's list kept: the chats are held

    async def during() -> None:  # after user 1's read took its answer: 3 chats change
        for cid in world.chats:
            world.post(cid, 1)
        world.feed.deliver()

    world.store.during, world.store.before = during, False
    await world.lists.lists(1)
    await world.check(2)
    await world.check(1)


async def test_a_message_counted_while_a_joined_chat_is_read_is_read_again() -> None:
    """Found by the model test: a chat the user had just joined is not held yet while it
    is read, so a message counted meanwhile marked nothing, and the chat stayed without
    it."""
    world = World(most=10_000, stale_max=32)
    await world.apply(("create", [1, 2]))
    await world.check(3)  # user 3 in no chat, kept
    await world.service.add_members(world.chats[0], 1, [3])

    async def during() -> None:  # after the chat's read took its answer
        world.post(world.chats[0], 1)
        world.feed.deliver()

    world.store.during, world.store.before = during, False
    await world.lists.lists(3)
    await world.check(3)


async def test_a_chat_being_read_for_one_user_is_read_again_for_another() -> None:
    """Found in review: a read in flight unmarked its chat, so another user's list begun
    meanwhile gave the reading from before the change."""
    world = World(most=10_000, stale_max=32)
    await world.apply(("create", [1, 2]))
    await world.check(1)
    await world.check(2)
    world.post(world.chats[0], 1)
    world.feed.deliver()
    gate, entered = asyncio.Event(), asyncio.Event()
    read = world.store.get_chat

    async def held_once(cid: str) -> ChatView | None:
        world.store.get_chat = read  # type: ignore[method-assign]
        entered.set()
        await gate.wait()
        return await read(cid)

    world.store.get_chat = held_once  # type: ignore[method-assign]
    first = asyncio.create_task(world.lists.lists(1))
    await entered.wait()  # user 1's read of the chat is in flight
    await world.check(2)
    gate.set()
    await first
    await world.check(1)


CID = "65f0c0ffee0123456789abcd"
EVENTS = [
    {"v": 1, "type": "chat.read", "cid": CID, "uid": 7, "seq": 3},
    {"v": 1, "type": "chat.members_added", "cid": CID, "users": [4, 5], "members": [1, 4, 5]},
    {"v": 1, "type": "chat.created", "cid": CID,
     "chat": {"object": "chat", "id": CID, "users": [1, 2], "createdAt": 1_700_000_000,
              "lastSeq": 0, "lastMessage": None, "readSeq": 0, "unread": 0}},
    {"v": 1, "type": "message.created", "cid": CID, "seq": 1,
     "message": {"object": "message", "id": CID, "cid": CID, "uid": 2,
                 "createdAt": 1_700_000_000, "text": "hi", "seq": 1}},
]  # fmt: skip
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


#: Integers as JSON Schema reads them (7.0 is 7), and what only looks like one.
EDGES = [1.0, 7.0, 1e2, True, False, [4.0, 5], [True], [2.0**53], 2.0**53, -0.0, [], [None]]


def _json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # past 64 bits, or a float JSON lacks
        return b"{}"


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=64),
        ANY_JSON.map(_json),
        st.sampled_from(EVENTS).flatmap(
            lambda good: st.sampled_from(sorted(good)).flatmap(
                lambda key: (ANY_JSON | st.sampled_from(EDGES)).map(
                    lambda bad: _json({**good, key: bad})
                )
            )
        ),
        st.sampled_from(EVENTS).map(_json),
    )
)
def test_any_record_is_a_change_or_refused_and_every_event_is_read_as_its_model_says(
    value: bytes,
) -> None:
    """Whoever may produce to the events topic reaches Change.of: anything is refused
    with ValueError (the feed skips it) or read; an event the contract takes is read as
    its model names its chat and users."""
    try:
        change = Change.of(value)
    except ValueError:
        change = None
    try:
        event = decode_event(value)
    except ValueError:
        return
    if isinstance(event, ChatCreated):
        users: tuple[int, ...] = tuple(event.chat.users)
    elif isinstance(event, MembersAdded):
        users = tuple(event.users)
    elif isinstance(event, ChatRead):
        users = (event.uid,)
    else:
        users = ()
    assert change == Change(event.type, event.cid, users)


async def test_a_list_too_large_to_keep_pushes_no_other_user_out() -> None:
    """Found in review: with two requests of such a user at once, the first one's end
    dropped every other user to make room for the one still in use."""
    world = World(most=60, stale_max=32)
    for uid in (1, 2, 3):
        await world.apply(("create", [uid, 99]))
        await world.check(uid)
    for _ in range(8):  # 8 chats of 2 members: 1 + 8 + 8 x 8 entries, past 60
        await world.apply(("create", [9, 98]))
    await asyncio.gather(world.lists.lists(9), world.lists.lists(9))
    world.store.calls.clear()
    for uid in (1, 2, 3):
        await world.check(uid)
    assert world.store.calls == []  # all three still kept, nothing read again
