"""Hand-written in-memory stand-ins for the worker's ports (unit tests only).

`MemoryStore` keeps the four collections as dicts and honours what the worker relies
on from MongoDB: a unique key per message id and per (chat, seq), and updates that never
move a chat's sequence back. `fail_next` makes chosen calls fail, `refuse_after` makes them
refuse once they did their work (a refusal whose write went through), `crash_after` stops a
batch between two steps, as a SIGKILL would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from contracts.records import MessageRecord
from dialogue_worker.adapters.mongo_log import claim_turns
from dialogue_worker.domain.chats import ChatView, Full
from dialogue_worker.domain.history import page_of
from dialogue_worker.domain.messages import MessageView
from dialogue_worker.domain.records import InboundRecord, Rejected
from dialogue_worker.domain.sequencing import ChatState, Known
from dialogue_worker.errors import OutboxUnavailable, StorageUnavailable, StoreRefused
from dialogue_worker.services.ports import (
    ChatAdvance,
    ChatForWriting,
    Event,
    IdEntry,
    StoredMessage,
)


class Crash(BaseException):
    """The process died here (a BaseException, so no retry or refusal logic catches it)."""


@dataclass
class Row:
    chat: ChatView
    state: ChatState


def _view(m: StoredMessage) -> MessageView:
    return MessageView(m.id, m.cid, m.uid, m.text, m.created_at, m.seq, m.at)


class MemoryStore:
    def __init__(self) -> None:
        self.chats: dict[str, Row] = {}
        self.messages: dict[tuple[str, int], StoredMessage] = {}
        self.ids: dict[str, IdEntry] = {}
        self.reads: dict[tuple[str, int], int] = {}
        self.fail_next: dict[str, int] = {}  # method name -> failures to raise
        self.refuse_after: dict[str, int] = {}  # method name -> refusals after its work
        self.crash_after: str | None = None  # method name after which the "process" dies
        self.up = True
        self.calls: list[str] = []

    # --- helpers for tests ---------------------------------------------------------

    def add_chat(self, cid: str, users: Collection[int], opened_at: float = 1.0) -> None:
        chat = ChatView(cid, frozenset(users), int(opened_at), opened_at)
        self.chats[cid] = Row(chat, ChatState())

    def seqs(self, cid: str) -> dict[int, str]:
        """seq -> message id of a chat's stored history."""
        return {seq: m.id for (c, seq), m in sorted(self.messages.items()) if c == cid}

    def _step(self, name: str) -> None:
        self.calls.append(name)
        if not self.up:
            raise StorageUnavailable("connection refused")
        if self.fail_next.get(name):
            self.fail_next[name] -= 1
            raise StorageUnavailable(f"{name} failed")

    def _done(self, name: str) -> None:
        if self.refuse_after.get(name):
            self.refuse_after[name] -= 1
            raise StoreRefused(f"{name} refused after its write")
        if self.crash_after == name:
            self.crash_after = None
            raise Crash(name)

    # --- MessageStore --------------------------------------------------------------

    def unstorable(self, message: MessageRecord) -> str | None:
        return None

    async def writable(self) -> None:
        self._step("writable")

    async def chats_for_writing(self, cids: Collection[str]) -> dict[str, ChatForWriting]:
        self._step("chats_for_writing")
        found = {}
        for cid in cids:
            row = self.chats.get(cid)
            if row is None:
                continue
            state = row.state
            while (after := self.messages.get((cid, state.last_seq + 1))) is not None:
                state = ChatState(after.seq, after.partition, after.offset)
            found[cid] = ChatForWriting(row.chat.users, state, row.state.last_seq)
        return found

    async def known(self, ids: Collection[str]) -> dict[str, Known]:
        self._step("known")
        found = {}
        for mid in ids:
            entry = self.ids.get(mid)
            if entry is not None:
                stored = self.messages.get((entry.cid, entry.seq))
                applied = stored is not None and stored.id == mid
                created = stored.created_at if stored is not None and applied else None
                taken = stored is not None and not applied
                found[mid] = Known(
                    entry.cid,
                    entry.seq,
                    entry.uid,
                    entry.digest,
                    applied,
                    created,
                    taken,
                    entry.writer,
                    entry.pinned,
                    entry.version,
                )
        return found

    async def claim(self, entries: Sequence[IdEntry]) -> set[str]:
        self._step("claim")
        # As MongoMessageLog sends them: each command stops at the first id there already,
        # leaving the rest of it (other chats too) and the commands after it unwritten.
        unwritten: set[str] = set()
        for commands in claim_turns(entries):
            stopped = False
            for e in (e for command in commands for e in command):
                if stopped or e.id in self.ids:
                    stopped = True
                    unwritten.add(e.id)
                else:
                    self.ids[e.id] = e
        self._done("claim")
        return unwritten

    async def reclaim(self, entries: Sequence[IdEntry], was: Mapping[str, Known]) -> set[str]:
        self._step("reclaim")
        moved = {
            e.id
            for e in entries
            if _as_found(self.ids[e.id]) != (was[e.id].seq, was[e.id].writer, was[e.id].version)
            or self._holds(e.cid, was[e.id].seq, e.id)
        }
        self.ids.update({e.id: e for e in entries if e.id not in moved})
        return moved

    def _holds(self, cid: str, seq: int, mid: str) -> bool:
        stored = self.messages.get((cid, seq))
        return stored is not None and stored.id == mid

    async def append(self, messages: Sequence[StoredMessage]) -> dict[str, int]:
        self._step("append")
        others: dict[str, int] = {}
        for m in messages:
            stored = self.messages.setdefault((m.cid, m.seq), m)
            if stored.id != m.id:
                others[m.cid] = min(m.seq, others.get(m.cid, m.seq))
        self._done("append")
        return others

    async def retract(self, messages: Sequence[StoredMessage]) -> None:
        self._step("retract")
        for m in messages:
            stored = self.messages.get((m.cid, m.seq))
            if stored is not None and (stored.id, stored.at) == (m.id, m.at):
                del self.messages[(m.cid, m.seq)]

    async def counts(self, cids: Collection[str]) -> dict[str, int]:
        self._step("counts")
        return {cid: self.chats[cid].chat.last_seq for cid in cids if cid in self.chats}

    async def restamp(self, stamps: Sequence[tuple[str, int]], at: float) -> None:
        self._step("restamp")
        for key in stamps:  # as `update_one`: a seq that holds nothing is left as it is
            if key in self.messages:
                self.messages[key] = replace(self.messages[key], at=at)
        self._done("restamp")

    async def advance(self, updates: Sequence[ChatAdvance]) -> None:
        self._step("advance")
        for u in updates:
            row = self.chats[u.cid]
            if row.state.last_seq < u.state.last_seq:
                chat = replace(
                    row.chat, last_seq=u.state.last_seq, last_at=u.at, last_message=u.last
                )
                self.chats[u.cid] = Row(chat, u.state)
        self._done("advance")

    # --- ChatStore -----------------------------------------------------------------

    async def ping(self) -> None:
        self._step("ping")

    async def insert_chat(self, chat: ChatView) -> None:
        self._step("insert_chat")
        self.chats[chat.id] = Row(replace(chat, pending=True), ChatState())

    async def open_chat(self, cid: str, at: float) -> None:
        self._step("open_chat")
        if (row := self.chats.get(cid)) is not None:
            row.chat = replace(row.chat, pending=False, opened_at=at)

    async def remove_chat(self, cid: str) -> None:
        self._step("remove_chat")
        self.chats.pop(cid, None)

    async def get_chat(self, cid: str) -> ChatView | None:
        self._step("get_chat")
        row = self.chats.get(cid)
        return None if row is None else row.chat

    async def chats_of(self, uid: int) -> list[ChatView]:
        self._step("chats_of")
        return [row.chat for row in self.chats.values() if uid in row.chat.users]

    async def add_members(
        self, cid: str, member: int, users: Sequence[int], most: int
    ) -> tuple[ChatView, list[int]] | Full | None:
        self._step("add_members")
        row = self.chats.get(cid)
        if row is None or member not in row.chat.users:
            return None
        added = [u for u in dict.fromkeys(users) if u not in row.chat.users]
        if len(row.chat.users) + len(added) > most:
            return Full(members=len(row.chat.users), new=len(added), most=most)
        self.chats[cid] = Row(replace(row.chat, users=row.chat.users | set(added)), row.state)
        return self.chats[cid].chat, added

    async def history(self, cid: str, pages: Sequence[int]) -> list[MessageView]:
        wanted = set(pages)
        return [
            _view(m) for (c, seq), m in self.messages.items() if c == cid and page_of(seq) in wanted
        ]

    async def messages_at(self, cid: str, seqs: Sequence[int]) -> list[MessageView]:
        return [_view(self.messages[cid, s]) for s in seqs if (cid, s) in self.messages]

    async def seq_of(self, cid: str, mid: str) -> int | None:
        entry = self.ids.get(mid)
        if entry is None or entry.cid != cid:
            return None
        stored = self.messages.get((cid, entry.seq))
        return entry.seq if stored is not None and stored.id == mid else None

    async def activity_as_of(self, cid: str, last_seq: int, when: float) -> float | None:
        self._step("activity_as_of")
        times = [m.at for (c, _), m in self.messages.items() if c == cid and m.at <= when]
        return max(times) if times else None

    async def read_markers(self, uid: int) -> dict[str, int]:
        return {cid: seq for (cid, u), seq in self.reads.items() if u == uid}

    async def read_marker(self, cid: str, uid: int) -> int:
        return self.reads.get((cid, uid), 0)

    async def move_read(self, cid: str, uid: int, seq: int) -> tuple[int, bool]:
        old = self.reads.get((cid, uid), 0)
        self.reads[(cid, uid)] = max(old, seq)
        return max(old, seq), seq > old


class MemoryOutbox:
    def __init__(self) -> None:
        self.dead: list[Rejected] = []
        self.forwarded: list[tuple[InboundRecord, str]] = []
        self.events: list[Event] = []
        self.fail_next = 0
        self.stalled = False  # publish waits for ever, as for a broker that never answers

    def _step(self) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise OutboxUnavailable("broker down")

    async def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        self._step()
        self.dead.extend(rejected)

    async def forward(self, records: Sequence[tuple[InboundRecord, str]]) -> None:
        self._step()
        self.forwarded.extend(records)

    async def publish(self, events: Sequence[Event]) -> None:
        self._step()
        if self.stalled:
            await asyncio.Event().wait()
        self.events.extend(events)


def _as_found(entry: IdEntry) -> tuple[int, str | None, int | None]:
    """What a rewrite of an entry must find it as: its seq, writer and version (as the
    real store's filter names them, and as FerretDB's version guard holds the last)."""
    return entry.seq, entry.writer, entry.version
