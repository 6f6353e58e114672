"""The agent's write path in MongoDB (the MessageStore port): ids, history, chat state."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from bson import ObjectId
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

from contracts.records import MessageRecord
from dialogue_worker.adapters.mongo import (
    DUPLICATE_KEY,
    ORDERED_CHUNK,
    STALE_WRITE,
    Doc,
    MongoDatabase,
    failure,
    history_doc,
    passing,
    unstorable,
)
from dialogue_worker.domain.sequencing import ChatState, Known
from dialogue_worker.errors import StorageUnavailable, StoreRefused, WorkerError
from dialogue_worker.services.ports import ChatAdvance, ChatForWriting, IdEntry, StoredMessage
from platform_common.gather import bounded

T = TypeVar("T")
R = TypeVar("R")
#: Look-ups sent at once (each is one round trip; FerretDB serves them in parallel).
PARALLEL = 16
#: Documents per `insert` command: a batch's inserts go as several commands at once,
#: which FerretDB runs in parallel (500 documents: one command ~28 ms, four ~19 ms).
INSERT_CHUNK = 125


def id_doc(entry: IdEntry) -> Doc:
    return {
        "_id": ObjectId(entry.id),
        "cid": ObjectId(entry.cid),
        "seq": entry.seq,
        "uid": entry.uid,
        "h": entry.digest,
        "p": entry.partition,
        "o": entry.offset,
        "w": entry.writer,
        "n": entry.pinned,
        "v": entry.version,
    }


async def each(items: Iterable[T], call: Callable[[T], Awaitable[R]]) -> list[R]:
    """`call` for every item, at most PARALLEL at a time, results in order (none starts
    after one failed)."""
    return await bounded(items, call, PARALLEL)


class MongoMessageLog:
    def __init__(self, database: MongoDatabase) -> None:
        self._db = database

    def unstorable(self, message: MessageRecord) -> str | None:
        return unstorable(message)

    async def writable(self) -> None:
        await self._db.writable()

    async def chats_for_writing(self, cids: Collection[str]) -> dict[str, ChatForWriting]:
        found = await each(sorted(cids), self._chat_for_writing)
        return {cid: chat for cid, chat in zip(sorted(cids), found, strict=True) if chat}

    async def _chat_for_writing(self, cid: str) -> ChatForWriting | None:
        fields = {"users": 1, "lastSeq": 1, "lastPart": 1, "lastOffset": 1}
        try:
            doc = await self._db.chats.find_one({"_id": ObjectId(cid)}, fields)
            if doc is None:
                return None
            counted = doc.get("lastSeq", 0)
            state = ChatState(counted, doc.get("lastPart", -1), doc.get("lastOffset", -1))
            # A crash between storing messages and counting them leaves the chat behind.
            while (
                after := await self._db.history.find_one(
                    self._db.message(cid, state.last_seq + 1), {"seq": 1, "p": 1, "o": 1}
                )
            ) is not None:
                state = ChatState(after["seq"], after["p"], after["o"])
        except PyMongoError as exc:
            raise failure(exc) from exc
        return ChatForWriting(frozenset(doc["users"]), state, counted)

    async def known(self, ids: Collection[str]) -> dict[str, Known]:
        found = await each(sorted(ids), self._known)
        return {mid: k for mid, k in zip(sorted(ids), found, strict=True) if k is not None}

    async def _known(self, mid: str) -> Known | None:
        try:
            entry = await self._db.ids.find_one({"_id": ObjectId(mid)})
            if entry is None:
                return None
            cid = str(entry["cid"])
            stored = await self._db.history.find_one(
                self._db.message(cid, entry["seq"]), {"id": 1, "createdAt": 1}
            )
        except PyMongoError as exc:
            raise failure(exc) from exc
        seq, uid, digest = entry["seq"], entry["uid"], entry["h"]
        applied = stored is not None and stored["id"] == entry["_id"]
        return Known(
            cid,
            seq,
            uid,
            digest,
            applied,
            created_at=stored["createdAt"] if stored is not None and applied else None,
            taken=stored is not None and not applied,  # another message holds its seq
            writer=entry.get("w"),  # (entries written before 2026-12-05 have neither)
            pinned=entry.get("n", False),
            version=entry.get("v"),  # (nor before 2026-12-07)
        )

    async def claim(self, entries: Sequence[IdEntry]) -> set[str]:
        # Each chat's entries from the lowest seq, as ordered inserts (which stop at the
        # first duplicate) of whole chats: a command stopped by one chat leaves the chats
        # after it in that command unwritten too (claimed again in the next round; that
        # happens only when an id is taken). A chat with more than ORDERED_CHUNK entries
        # goes as commands one after another, none after one that stopped.
        outcomes = await asyncio.gather(
            *(self._claim_in_turn(commands) for commands in claim_turns(entries)),
            return_exceptions=True,
        )
        return set().union(*_results(outcomes))

    async def _claim_in_turn(self, commands: list[list[IdEntry]]) -> set[str]:
        for i, command in enumerate(commands):
            docs = [id_doc(e) for e in command]
            stopped = await self._insert_chunks(self._db.ids, [docs], ordered=True)
            if stopped:
                rest = command[min(stopped) :] + [e for later in commands[i + 1 :] for e in later]
                return {e.id for e in rest}
        return set()

    async def reclaim(self, entries: Sequence[IdEntry], was: Mapping[str, Known]) -> set[str]:
        async def replace(entry: IdEntry) -> str | None:
            before = was[entry.id]
            doc = {**id_doc(entry), "v": before.next_version}
            there = await self._db.history.find_one(
                self._db.message(entry.cid, before.seq), {"id": 1}
            )
            if there is not None and there["id"] == doc["_id"]:
                return entry.id  # stored where it points meanwhile: not left over
            # {"w": None} also matches an entry written before entries had a writer, and
            # {"v": None} one written before they had a version.
            as_before = {
                "_id": doc["_id"],
                "seq": before.seq,
                "w": before.writer,
                "v": before.version,
            }
            try:
                result = await self._db.ids.replace_one(as_before, doc)
            except OperationFailure as exc:
                # FerretDB checks the filter, then writes the document by `_id` alone: two
                # owners moving one entry at once both matched it, and stored its message
                # at two seqs (found in review). Its version guard refuses the later one.
                if STALE_WRITE in str(exc):
                    return entry.id
                raise
            return None if result.matched_count else entry.id

        return {mid for mid in await self._guarded(each(entries, replace)) if mid}

    async def append(self, messages: Sequence[StoredMessage]) -> dict[str, int]:
        docs = [history_doc(m) for m in messages]
        failed = await self._insert(self._db.history, docs)

        async def holds_another(index: int) -> bool:
            m = messages[index]
            stored = await self._db.history.find_one(self._db.message(m.cid, m.seq), {"id": 1})
            return stored is None or stored["id"] != docs[index]["id"]

        others = await self._guarded(each(sorted(failed), holds_another))
        taken: dict[str, int] = {}
        for index, other in zip(sorted(failed), others, strict=True):
            if other:
                m = messages[index]
                taken[m.cid] = min(m.seq, taken.get(m.cid, m.seq))
        return taken

    async def retract(self, messages: Sequence[StoredMessage]) -> None:
        async def remove(message: StoredMessage) -> None:
            mine = {"id": ObjectId(message.id), "at": message.at}
            await self._db.history.delete_one(self._db.message(message.cid, message.seq) | mine)

        await self._guarded(each(messages, remove))

    async def counts(self, cids: Collection[str]) -> dict[str, int]:
        async def one(cid: str) -> Doc | None:
            found: Doc | None = await self._db.chats.find_one(
                {"_id": ObjectId(cid)}, {"lastSeq": 1}
            )
            return found

        docs = await self._guarded(each(sorted(cids), one))
        return {str(d["_id"]): d.get("lastSeq", 0) for d in docs if d is not None}

    async def restamp(self, stamps: Sequence[tuple[str, int]], at: float) -> None:
        """Set `at` of the messages at these (cid, seq): one `update` each, PARALLEL at
        a time (see `advance`)."""

        async def one(stamp: tuple[str, int]) -> None:
            await self._db.history.update_one(self._db.message(*stamp), {"$set": {"at": at}})

        await self._guarded(each(stamps, one))

    async def advance(self, updates: Sequence[ChatAdvance]) -> None:
        """Move each chat's state forward (a stale state matches nothing), one `update`
        command per chat, PARALLEL at a time. Never one bulk command: FerretDB 1.x holds
        a PostgreSQL connection for every statement of an `update` until the command
        ends and takes one more for each write, so a command of 50 or more statements
        exhausts its pool of 50 and wedges the whole server (docs/decisions.md, "What
        would make writes cheaper")."""

        async def one(update: ChatAdvance) -> None:
            state = update.state
            await self._db.chats.update_one(
                {"_id": ObjectId(update.cid), "lastSeq": {"$lt": state.last_seq}},
                {
                    "$set": {
                        "lastSeq": state.last_seq,
                        "lastPart": state.partition,
                        "lastOffset": state.last_offset,
                        "lastAt": update.at,
                        "lastMessage": update.last.model_dump(),
                    },
                    "$inc": {"v": 1},
                },
            )

        await self._guarded(each(updates, one))

    async def _insert(self, collection: Any, docs: list[Doc]) -> set[int]:
        """Insert unordered; the indexes of documents whose `_id` was there already.

        The documents go as `insert` commands of INSERT_CHUNK sent together, which is one
        unordered insert split up: every document is tried, whatever another command
        meets."""
        chunks = [docs[s : s + INSERT_CHUNK] for s in range(0, len(docs), INSERT_CHUNK)]
        return await self._insert_chunks(collection, chunks, ordered=False)

    async def _insert_chunks(
        self, collection: Any, chunks: list[list[Doc]], *, ordered: bool
    ) -> set[int]:
        """One `insert` command per chunk, sent together; the indexes (counted over the
        chunks in turn) of the documents not written: whose `_id` was there already, and
        for an ordered command every document after that one in its chunk.

        All commands end before a failure is raised; a transient one is preferred, so the
        batch is retried rather than refused when either could be said.
        """
        chunks = [chunk for chunk in chunks if chunk]
        if not chunks:
            return set()
        starts = [sum(len(c) for c in chunks[:i]) for i in range(len(chunks))]
        outcomes = await asyncio.gather(
            *(collection.insert_many(chunk, ordered=ordered) for chunk in chunks),
            return_exceptions=True,
        )
        duplicates: set[int] = set()
        failures: list[tuple[WorkerError, BaseException]] = []
        for start, chunk, outcome in zip(starts, chunks, outcomes, strict=True):
            if isinstance(outcome, BulkWriteError):
                try:
                    found = _duplicates(outcome.details)
                except (StorageUnavailable, StoreRefused) as exc:
                    failures.append((exc, outcome))
                    continue
                if ordered and found:
                    found = set(range(min(found), len(chunk)))
                duplicates |= {start + i for i in found}
            elif isinstance(outcome, PyMongoError):
                failures.append((failure(outcome), outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
        _raise_first(failures)
        return duplicates

    async def _guarded(self, pending: Awaitable[R]) -> R:
        try:
            return await pending
        except PyMongoError as exc:
            raise failure(exc) from exc


def claim_turns(entries: Sequence[IdEntry]) -> list[list[list[IdEntry]]]:
    """How `claim` sends entries: turns sent at once, each a list of ordered commands sent
    one after another. A command holds whole chats, each from its lowest seq, at most
    ORDERED_CHUNK entries; a chat with more has a turn of its own."""
    by_chat: dict[str, list[IdEntry]] = {}
    for entry in sorted(entries, key=lambda e: (e.cid, e.seq)):
        by_chat.setdefault(entry.cid, []).append(entry)
    turns: list[list[list[IdEntry]]] = []
    shared: list[IdEntry] = []
    for run in by_chat.values():
        if len(run) > ORDERED_CHUNK:
            turns.append([run[i : i + ORDERED_CHUNK] for i in range(0, len(run), ORDERED_CHUNK)])
            continue
        if len(shared) + len(run) > ORDERED_CHUNK:
            turns.append([shared])
            shared = []
        shared += run
    if shared:
        turns.append([shared])
    return turns


def _raise_first(failures: Sequence[tuple[WorkerError, BaseException]]) -> None:
    """Raise one of these failures, if any: a transient one when there is one, so the
    batch is retried rather than refused when either could be said."""
    if failures:
        raised, cause = min(failures, key=lambda f: not isinstance(f[0], StorageUnavailable))
        # Not chained to a BulkWriteError: its text holds every failed document, message
        # texts included, and a traceback logged with the error (write_behind.py) would
        # write them to the log (found in review). `raised` says what went wrong.
        raise raised from (None if isinstance(cause, BulkWriteError) else cause)


def _results(outcomes: Sequence[T | BaseException]) -> list[T]:
    """The results of calls gathered with their exceptions, once all ended; a failure
    is raised as `_raise_first` does, anything else that is not a store error at once."""
    failures: list[WorkerError] = []
    results: list[T] = []
    for outcome in outcomes:
        if isinstance(outcome, (StorageUnavailable, StoreRefused)):
            failures.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            results.append(outcome)
    if failures:
        raise min(failures, key=lambda f: not isinstance(f, StorageUnavailable))
    return results


def _duplicates(details: Mapping[str, Any]) -> set[int]:
    """The duplicate-key indexes of a bulk write; any other failure is raised."""
    if details.get("writeConcernErrors"):
        raise StorageUnavailable(f"write concern failed: {details['writeConcernErrors'][:1]}")
    errors: list[Mapping[str, Any]] = details.get("writeErrors", [])
    others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
    if others:
        first = f"code {others[0].get('code')}: {others[0].get('errmsg')}"
        # Judged by the server's words alone: each error also carries the refused
        # document (`op`), whose text a producer chooses; in str(e) a message mentioning
        # a network error made a refusal transient, retried for ever (found in review).
        if any(passing(e.get("code"), str(e.get("errmsg", ""))) for e in others):
            raise StorageUnavailable(f"bulk write failed: {first}")
        raise StoreRefused(f"refused by MongoDB: {first}")
    return {int(e["index"]) for e in errors}
