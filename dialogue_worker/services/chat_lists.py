"""The chat lists a worker keeps: each user's chats and read markers, read from the store
once and then only what the events topic says has changed.

Reading a user's list from the store costs every chat and marker of the user (200 of
each take ~20 ms on FerretDB: docs/decisions.md, "The chat list, kept"). Kept here, a
list costs what changed since it was last given: usually nothing.

What is kept: for each user listed recently, the ids of their chats and their markers;
each of those chats once, shared by the users it is kept for. From an event only *which*
chat, marker or membership it concerns is taken: `message.created` and
`chat.members_added` mark the chat changed, `chat.read` the user's marker, `chat.created`
and `chat.members_added` a chat each named user may have joined. The next list of a user
reads what is marked, by key, before it answers; past `STALE_MAX` marks it reads the
whole list again. So every field a list shows comes from the store, and an event that is
forged, repeated or late costs reads, never a wrong list.

Which reading of a chat is fresh is told by ticks: every change event moves a counter,
a chat remembers the tick of its last change, and a kept reading the tick at which its
read began. A reading is stale while its chat changed after that tick, so a read in
flight never hides a change from another list (it clears no mark), and an older reading
never replaces a newer one. Chats not kept yet that change while any read is in flight
are remembered with their tick until no read that began before it is in flight.

A list is as fresh as the events this worker has read: before answering, the feed's
`caught_up` waits until every event published before the request is read (a
ListOffsets request, shared by the lists asked at once), so a marker moved or a chat
created through another worker shows here as it does there. When the feed cannot say
so within `BARRIER_WITHIN`, the list is read from the store whole, as without this
module.

A change that publishes no event is not seen until the list is read whole again: a chat
removed because its `chat.created` could not be published, and a chat counted by a
worker that died before publishing (its events come with the redelivery). Every list is
read whole again `ttl` seconds after its last whole read.

Memory: at most `most` entries (a user, a user's chat and a kept chat's member count
one each, a kept chat CHAT_ENTRIES more: 130-200 bytes an entry, measured by
bench/chat_lists_bench.py); past it the users listed longest ago are dropped, and a
list of more than `most` entries is read from the store every time, and keeps no other
user out (while its requests run, its entries are held beside the bound). Beside them,
chats that change while a read is in flight are remembered until no read begun before
their change is left (one entry a chat; a read lasts at most MONGO_TIMEOUT). Marks past
`STALE_MAX` for one user are not recorded: that user's next list is read whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from contracts.ids import is_object_id
from contracts.records import json_int
from dialogue_worker.domain.chats import ChatView
from dialogue_worker.services.ports import Barrier, ChatStore
from platform_common.gather import bounded

#: Seconds a list waits for the events feed to read up to the topic's ends.
BARRIER_WITHIN = 0.5
#: Marks past which a user's list is read whole (one read of all their chats costs
#: about as much as this many reads by key: docs/decisions.md, "The chat list, kept").
STALE_MAX = 32
#: Reads by key sent at once.
LOOKUPS = 8
#: Entries a kept chat counts beside one per member: its document (id, members, preview)
#: takes ~1.4 KB, about six times what a user's chat takes (bench/chat_lists_bench.py).
CHAT_ENTRIES = 6

Lists = tuple[list[ChatView], dict[str, int]]
_KINDS = frozenset(("message.created", "chat.members_added", "chat.created", "chat.read"))


@dataclass(frozen=True)
class Change:
    """What a kept list takes from an event: its type, its chat and the users it names
    (`chat.created`: the members; `chat.members_added`: the users added; `chat.read`:
    the reader)."""

    type: str
    cid: str
    users: tuple[int, ...] = ()

    @classmethod
    def of(cls, value: bytes) -> Change:
        """Decode an event's value for its marks alone (ValueError: not an event).

        Every field a list shows is read from the store, so the rest of the event is not
        checked: validating each event whole (contracts.events.decode_event, 13.5 µs)
        cost every worker ~15 µs of CPU per message stored anywhere; this takes 2.3 µs."""
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not isinstance(event, dict) or json_int(event.get("v")) != 1:
            raise ValueError("not an event of version 1")
        kind, cid = event.get("type"), event.get("cid")
        if not isinstance(kind, str) or kind not in _KINDS:
            raise ValueError("not an event: unknown type")
        if not is_object_id(cid):
            raise ValueError("not an event: no chat id")
        if kind == "message.created":
            named: Any = []
        elif kind == "chat.read":
            named = [event.get("uid")]
        elif kind == "chat.members_added":
            named = event.get("users")
        else:  # chat.created: its members
            chat = event.get("chat")
            named = chat.get("users") if isinstance(chat, dict) else None
        # Integers as the contract reads them (7.0 is 7: contracts.events.decode_event).
        whole = [json_int(uid) for uid in named] if isinstance(named, list) else [None]
        users = tuple(uid for uid in whole if uid is not None)
        if len(users) != len(whole):
            raise ValueError(f"not an event: {kind} without its users")
        return cls(kind, cid, users)


@dataclass
class _User:
    chats: set[str] = field(default_factory=set)
    reads: dict[str, int] = field(default_factory=dict)
    stale_reads: set[str] = field(default_factory=set)  # markers moved since read
    joined: set[str] = field(default_factory=set)  # chats the user may be in since read
    overflow: bool = False  # more marks than stale_max: read whole next time
    read_at: float | None = None  # when the list was read whole
    users: int = 0  # requests using this entry now (never dropped meanwhile)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ChatLists:
    """Users' chats and markers, kept current by `on_event` (see the module's notes)."""

    def __init__(
        self,
        store: ChatStore,
        feed: Barrier | None,
        *,
        most: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        counted: Callable[[str], None] = lambda source: None,
        stale_max: int = STALE_MAX,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._wall = wall  # the clock chats are stamped with: pending chats age on it
        self._store = store
        self._feed = feed
        self._most = most
        self._ttl = ttl
        self._clock = clock
        self._counted = counted
        self._stale_max = stale_max
        self._users: OrderedDict[int, _User] = OrderedDict()  # least recently listed first
        self._busy: dict[int, _User] = {}  # users with a request in progress
        self._chats: dict[str, ChatView] = {}  # the kept reading of each held chat
        self._holders: dict[str, int] = {}  # chat id -> users it is kept for
        self._tick = 0  # change events seen
        self._changed: dict[str, int] = {}  # held chat -> tick of its last change
        self._read_from: dict[str, int] = {}  # held chat -> tick its kept reading began
        self._recent: dict[str, int] = {}  # any chat changed while a read is in flight
        self._in_flight: dict[int, int] = {}  # read -> tick it began
        self._reads = 0  # reads begun (their keys)
        self._size = 0  # entries: see the module's notes on memory

    @property
    def size(self) -> int:
        return self._size

    def on_event(self, change: Change, published: float | None = None) -> None:
        """Mark what an event changed (the feed calls this for each event, in order)."""
        cid, kind = change.cid, change.type
        if kind in ("message.created", "chat.members_added"):
            self._tick += 1
            if cid in self._chats:
                self._changed[cid] = self._tick
            if self._in_flight:
                self._recent[cid] = self._tick
        if kind in ("chat.created", "chat.members_added"):
            for uid in change.users:
                if (member := self._users.get(uid)) is not None:
                    self._mark(member, member.joined, cid)
        elif kind == "chat.read":
            for uid in change.users:
                if (reader := self._users.get(uid)) is not None:
                    self._mark(reader, reader.stale_reads, cid)

    async def lists(self, uid: int) -> Lists:
        """The user's chats and their markers by chat id, as the store holds them now."""
        if self._feed is None or self._most == 0 or not await self._feed.caught_up(BARRIER_WITHIN):
            self._counted("store")
            return await self._read(uid)
        user = self._users.get(uid)
        if user is None:
            user = self._users[uid] = _User()
            self._size += 1
        self._users.move_to_end(uid)
        user.users += 1
        self._busy[uid] = user
        try:
            async with user.lock:
                expired = user.read_at is None or self._clock() - user.read_at >= self._ttl
                if expired or not await self._refresh(uid, user):
                    await self._read_whole(uid, user)
                    self._counted("read")
                else:
                    self._counted("kept")
                found = [self._chats[cid] for cid in user.chats], dict(user.reads)
        finally:
            user.users -= 1
            if user.users == 0:
                del self._busy[uid]
                # (a user's own entries are within the total: only past it can they be)
                if self._size > self._most and self._own_size(user) > self._most:
                    self._drop(uid)  # too large to keep: it would push every other user out
            self._shrink()
        return found

    async def _read(self, uid: int) -> Lists:
        chats, reads, _ = await self._read_all(uid)
        return chats, reads

    async def _read_all(self, uid: int) -> tuple[list[ChatView], dict[str, int], list[str]]:
        """The user's chats and markers, and apart the chats still pending (their
        creation not ended: listed by nobody yet)."""
        # Both reads cost the user's chats (one document each): sent together.
        chats, reads = await asyncio.gather(
            self._store.chats_of(uid), self._store.read_markers(uid)
        )
        now = self._wall()
        pending = [c.id for c in chats if c.pending and not c.abandoned(now)]
        return [c for c in chats if not c.pending], reads, pending

    async def _read_whole(self, uid: int, user: _User) -> None:
        user.joined.clear()
        user.stale_reads.clear()
        user.overflow = False
        async with self._reading() as began:
            try:
                chats, reads, pending = await self._read_all(uid)
            except BaseException:
                user.read_at = None  # read whole again next time
                raise
            # Its chat.created may be marked already, and cleared above: without a mark
            # the chat, once opened, would wait for the next whole read.
            user.joined.update(pending)
            now = {chat.id for chat in chats}
            for chat in chats:
                if chat.id not in user.chats:
                    self._hold(chat.id)
                self._put(chat, began)
        for cid in user.chats - now:
            self._release(cid)
        self._size += len(now) - len(user.chats)
        user.chats, user.reads = now, reads
        user.read_at = self._clock()

    async def _refresh(self, uid: int, user: _User) -> bool:
        """Read what is marked for this user; False when there is too much (read whole)."""
        stale = [cid for cid in user.chats if self._stale(cid)]
        joined = list(user.joined - user.chats)
        marks = list(user.stale_reads & (user.chats | user.joined))
        if user.overflow or len(stale) + len(joined) + len(marks) > self._stale_max:
            return False
        if not (stale or joined or marks):
            return True
        # A marker or a joined chat moved again while read is marked again meanwhile; a
        # changed chat stays marked until a reading begun after its change is kept.
        user.joined.clear()
        user.stale_reads.clear()
        async with self._reading() as began:
            try:
                chats = await bounded([*stale, *joined], self._store.get_chat, LOOKUPS)
                readers = await bounded(
                    marks, lambda cid: self._store.read_marker(cid, uid), LOOKUPS
                )
            except BaseException:
                user.joined.update(joined)
                user.stale_reads.update(marks)
                raise
            for cid, chat in zip([*stale, *joined], chats, strict=True):
                if chat is None:  # removed (its chat.created was never published)
                    self._forget(cid)
                elif chat.abandoned(self._wall()):  # will never open: as if removed
                    self._forget(cid)
                elif chat.pending:  # told of before its creator opened it: read it again
                    user.joined.add(cid)
                elif chat.has_member(uid) or cid in user.chats:
                    if cid not in user.chats:
                        user.chats.add(cid)
                        self._size += 1
                        self._hold(cid)
                    self._put(chat, began)
        for cid, seq in zip(marks, readers, strict=True):
            if cid in user.chats:
                user.reads[cid] = seq
        return True

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[int]:
        """A read of the store in flight: the tick it began at; changes meanwhile of chats
        not held are remembered (`_recent`) until no read begun before them is left."""
        self._reads += 1
        key, began = self._reads, self._tick
        self._in_flight[key] = began
        try:
            yield began
        finally:
            del self._in_flight[key]
            oldest = min(self._in_flight.values(), default=None)
            if oldest is None:
                self._recent.clear()
            elif oldest > began:
                self._recent = {c: t for c, t in self._recent.items() if t > oldest}

    def _stale(self, cid: str) -> bool:
        return self._changed.get(cid, -1) > self._read_from[cid]

    def _hold(self, cid: str) -> None:
        self._holders[cid] = self._holders.get(cid, 0) + 1

    def _put(self, chat: ChatView, began: int) -> None:
        """Keep a reading of a held chat begun at tick `began`, unless a newer is kept."""
        cid = chat.id
        if self._read_from.get(cid, -1) > began:
            return
        if (changed := self._recent.get(cid)) is not None and changed > began:
            self._changed[cid] = max(changed, self._changed.get(cid, -1))
        old = self._chats.get(cid)
        self._size += _weight(chat) - (0 if old is None else _weight(old))
        self._chats[cid] = chat
        self._read_from[cid] = began

    def _release(self, cid: str) -> None:
        left = self._holders[cid] - 1
        if left:
            self._holders[cid] = left
            return
        del self._holders[cid]
        self._changed.pop(cid, None)
        self._read_from.pop(cid, None)
        chat = self._chats.pop(cid, None)
        if chat is not None:
            self._size -= _weight(chat)

    def _forget(self, cid: str) -> None:
        """A chat that is no longer stored: out of every list that holds it."""
        for user in self._users.values():
            if cid in user.chats:
                user.chats.discard(cid)
                user.reads.pop(cid, None)
                self._size -= 1
                self._release(cid)

    def _own_size(self, user: _User) -> int:
        return 1 + len(user.chats) + sum(_weight(self._chats[cid]) for cid in user.chats)

    def _drop(self, uid: int) -> None:
        user = self._users.pop(uid)
        for cid in user.chats:
            self._release(cid)
        self._size -= 1 + len(user.chats)

    def _shrink(self) -> None:
        """Drop the users listed longest ago (none in use) until the entries fit. A user
        in use whose list alone is past the bound is not kept (dropped when its last
        request ends): its entries meanwhile push nobody out."""
        if self._size <= self._most:  # the common case: nothing to count
            return
        sizes = (self._own_size(user) for user in self._busy.values())
        allowed = self._most + sum(size for size in sizes if size > self._most)
        while self._size > allowed:
            # The oldest first; users in use were moved to the end when their request came.
            idle = next((uid for uid, user in self._users.items() if user.users == 0), None)
            if idle is None:
                return
            self._drop(idle)

    def _mark(self, user: _User, marks: set[str], cid: str) -> None:
        """Record one mark for the user; past `stale_max` marks, that its list is to be
        read whole (the marks are dropped: they would cost more reads than that)."""
        if user.overflow:
            return
        marks.add(cid)
        if len(user.joined) + len(user.stale_reads) > self._stale_max:
            user.overflow = True
            user.joined.clear()
            user.stale_reads.clear()


def _weight(chat: ChatView) -> int:
    return CHAT_ENTRIES + len(chat.users)
