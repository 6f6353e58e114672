"""The chats the agent writes to: their members and where their sequences stand."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from dialogue_worker.domain.sequencing import ChatState
from dialogue_worker.services.ports import MessageStore

#: Members the cache holds, all chats together (about 70 MB): bounding chats alone let
#: 100,000 chats of 1,000 members take ~7 GB (found in review; members() caches every
#: existing chat a record names, and anyone can make chats that large).
MAX_MEMBERS_HELD = 1_000_000


class ChatBook:
    """Members and sequence states of chats, kept apart because two paths use them.

    Members serve the sort of the next batch (which runs while the previous one is
    written): they are trusted for `ttl` seconds, and only to accept, so a record the
    cached members would refuse is checked against MongoDB first and a user added a
    moment ago is never dead-lettered because of the cache. Sequence states belong to
    the write path alone: it loads them (`ensure`, `reload`) and moves them (`advanced`),
    so a state is never replaced by a read made while a write of that chat was half done.
    With each state it keeps the seq the chat's document counts (`counted`), which is
    behind the state after a worker died between storing messages and counting them; it
    is a hint (the persister reads the document's count before stamping messages as
    newly counted) and None when not known. A state is trusted while this worker owns
    the chat's partition (`forget_partitions`); a stale one cannot do harm, only cost a
    retry, because a seq's key is unique.
    """

    def __init__(
        self,
        store: MessageStore,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        max_chats: int = 100_000,
        max_members: int = MAX_MEMBERS_HELD,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._max = max_chats
        self._max_members = max_members
        self._members: dict[str, tuple[float, frozenset[int]]] = {}
        self._held = 0  # members in `_members`, all chats together
        #: cid -> (sequence state, the seq the chat's document counts): one table, so
        #: both are known or neither (a count that is too low would re-count messages).
        self._states: dict[str, tuple[ChatState, int | None]] = {}

    async def members(self, wanted: Mapping[str, Collection[int]]) -> dict[str, frozenset[int]]:
        """Members of the chats that exist, for a batch whose authors per chat are `wanted`."""
        now = self._clock()
        found: dict[str, frozenset[int]] = {}
        stale = []
        for cid, authors in wanted.items():
            entry = self._members.get(cid)
            if entry is None or entry[0] <= now or not set(authors) <= entry[1]:
                stale.append(cid)
            else:
                found[cid] = entry[1]
        if stale:
            fresh = await self._store.chats_for_writing(stale)
            expires = self._clock() + self._ttl
            for cid, chat in fresh.items():
                self._hold(cid, expires, chat.members)
                found[cid] = chat.members
        return found

    @property
    def members_held(self) -> int:
        """Members cached, all chats together (at most `max_members`)."""
        return self._held

    def _hold(self, cid: str, expires: float, members: frozenset[int]) -> None:
        """Cache a chat's members; the table is emptied first when it would pass either
        bound (it may be: what a batch found was taken before)."""
        old = self._members.pop(cid, None)
        self._held -= 0 if old is None else len(old[1])
        if len(self._members) >= self._max or self._held + len(members) > self._max_members:
            self._members.clear()
            self._held = 0
        if len(members) <= self._max_members:
            self._members[cid] = (expires, members)
            self._held += len(members)

    def bound(self) -> None:
        """Keep the states bounded (called before a write plans, never during one)."""
        self._bound(self._states)

    async def ensure(self, cids: Collection[str]) -> None:
        """Load the states of the chats the write path has none for."""
        missing = [cid for cid in cids if cid not in self._states]
        if missing:
            await self.reload(missing)

    async def reload(self, cids: Collection[str]) -> None:
        """Read the chats' states again (checked against the stored history)."""
        fresh = await self._store.chats_for_writing(cids)
        self._states.update({cid: (chat.state, chat.counted) for cid, chat in fresh.items()})

    def state(self, cid: str) -> ChatState:
        return self._states.get(cid, (ChatState(), None))[0]

    def counted(self, cid: str) -> int | None:
        """The newest seq the chat's document counts, as far as this worker knows (None:
        the chat is not held, e.g. its partition was revoked while a batch was written)."""
        return self._states.get(cid, (ChatState(), None))[1]

    def advanced(self, cid: str, state: ChatState) -> None:
        """The chat's sequence moved to `state` (of a chat not held, nothing is kept: it
        is read again when next written). A chat read again by a write that ended after
        its partition was revoked is dropped when the partition is assigned again."""
        if cid in self._states:
            self._states[cid] = (state, self.counted(cid))

    def recorded(self, cid: str, seq: int) -> None:
        """The chat's document counts `seq` (or more)."""
        if cid in self._states:
            state, counted = self._states[cid]
            self._states[cid] = (state, seq if counted is None else max(seq, counted))

    def forget_partitions(self, partitions: Collection[int]) -> None:
        """This worker no longer owns these partitions: their chats' states may move on.
        So may those of chats with no seq yet (partition -1, so no owner known): one of
        them may live on a revoked partition, and was kept, stale, until a write found
        its seqs taken (found in review)."""
        gone = [
            cid
            for cid, (state, _) in self._states.items()
            if state.partition in partitions or state.partition < 0
        ]
        self.forget(gone)

    def forget(self, cids: Iterable[str]) -> None:
        for cid in cids:
            self._states.pop(cid, None)

    def _bound(self, table: dict[str, Any]) -> None:
        if len(table) >= self._max:
            table.clear()  # cheap bound; the next batch loads what it needs
