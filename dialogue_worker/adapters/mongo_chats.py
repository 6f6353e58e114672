"""Chats, history pages and read markers in MongoDB (the ChatStore port)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from contracts.api import LastMessage
from dialogue_worker.adapters.mongo import STALE_WRITE, Doc, MongoDatabase, failure
from dialogue_worker.adapters.mongo_log import each
from dialogue_worker.domain.chats import ChatView, Full
from dialogue_worker.domain.history import (
    PAGE_SIZE,
    SeqRange,
    lacking,
    moment_at_or_before,
    page_key,
    page_of,
)
from dialogue_worker.domain.messages import MessageView
from dialogue_worker.errors import StorageUnavailable
from platform_common.retry import Backoff, retry

#: Seqs read back page by page to find a chat's activity at a past moment: the newest
#: page, then STEP at a time (pages read together); past SEQS_BACK, one message at a time
#: by key, back in doubling steps and then halving (it had over 1,000 messages since).
SEQS_BACK, STEP = 1_000, 100
#: Seconds a read-marker move goes on trying when other moves of it win the race.
RACES_WITHIN = 1.0
_CHAT_FIELDS = ("users", "createdAt", "openedAt", "lastSeq", "lastAt", "lastMessage", "pending")


def _chat(doc: Doc) -> ChatView:
    last = doc.get("lastMessage")
    return ChatView(
        id=str(doc["_id"]),
        users=frozenset(doc["users"]),
        created_at=int(doc["createdAt"]),
        opened_at=float(doc.get("openedAt") or doc["createdAt"]),
        last_seq=int(doc.get("lastSeq", 0)),
        last_at=doc.get("lastAt"),
        last_message=None if last is None else LastMessage.model_validate(last),
        pending=bool(doc.get("pending")),
    )


def _message(doc: Doc) -> MessageView:
    return MessageView(
        id=str(doc["id"]),
        cid=str(doc["cid"]),
        uid=doc["uid"],
        text=doc["text"],
        created_at=doc["createdAt"],
        seq=doc["seq"],
        at=doc["at"],
    )


def _lost_a_race(exc: Exception) -> bool:
    """A write another move of the same marker beat (see MongoChats.move_read)."""
    return isinstance(exc, DuplicateKeyError) or STALE_WRITE in str(exc)


def _read_id(cid: str, uid: int) -> str:
    return f"{cid}:{uid}"


class MongoChats:
    def __init__(self, database: MongoDatabase) -> None:
        self._db = database

    async def ping(self) -> None:
        await self._db.ping()

    async def insert_chat(self, chat: ChatView) -> None:
        doc = {
            "_id": ObjectId(chat.id),
            "users": sorted(chat.users),
            "createdAt": chat.created_at,
            "openedAt": chat.opened_at,
            "lastSeq": 0,
            "lastAt": None,
            "lastMessage": None,
            "v": 0,
            "pending": True,  # until its chat.created is out (open_chat)
        }
        try:
            await self._db.chats.insert_one(doc)
        except DuplicateKeyError as exc:  # a fresh ObjectId never collides
            raise StorageUnavailable(f"chat id collision: {chat.id}") from exc
        except PyMongoError as exc:
            raise failure(exc) from exc

    async def open_chat(self, cid: str, at: float) -> None:
        try:
            await self._db.chats.update_one(
                {"_id": ObjectId(cid)},
                {"$unset": {"pending": ""}, "$set": {"openedAt": at}, "$inc": {"v": 1}},
            )
        except PyMongoError as exc:
            raise failure(exc) from exc

    async def remove_chat(self, cid: str) -> None:
        try:
            await self._db.chats.delete_one({"_id": ObjectId(cid)})
        except PyMongoError as exc:
            raise failure(exc) from exc

    async def get_chat(self, cid: str) -> ChatView | None:
        doc = await self._find_one(self._db.chats, {"_id": ObjectId(cid)})
        return None if doc is None else _chat(doc)

    async def chats_of(self, uid: int) -> list[ChatView]:
        try:
            docs = await self._db.chats.find(
                {"users": uid}, dict.fromkeys(_CHAT_FIELDS, 1)
            ).to_list()
        except PyMongoError as exc:
            raise failure(exc) from exc
        return [_chat(d) for d in docs]

    async def add_members(
        self, cid: str, member: int, users: Sequence[int], most: int
    ) -> tuple[ChatView, list[int]] | Full | None:
        # The write applies only while the chat has room for every user it adds (no
        # element at index most - len(adding)): one document's check and change, which
        # MongoDB applies atomically and FerretDB's version guard refuses when stale. When
        # it does not apply, the chat read back tells why; naming users already in it
        # leaves fewer to add, and the write is tried again for those alone.
        adding = list(dict.fromkeys(users))
        while True:
            room = most - len(adding)
            before = None
            if room >= 0:
                try:
                    before = await self._db.chats.find_one_and_update(
                        {
                            "_id": ObjectId(cid),
                            "users": member,
                            f"users.{room}": {"$exists": False},
                        },
                        {"$addToSet": {"users": {"$each": adding}}, "$inc": {"v": 1}},
                        return_document=ReturnDocument.BEFORE,
                    )
                except PyMongoError as exc:
                    raise failure(exc) from exc
            if before is not None:
                members = set(before["users"])
                added = [u for u in adding if u not in members]
                before["users"] = [*before["users"], *added]
                return _chat(before), added
            chat = await self.get_chat(cid)
            if chat is None or not chat.has_member(member):
                return None
            fresh = [u for u in adding if u not in chat.users]
            if len(chat.users) + len(fresh) > most:
                return Full(members=len(chat.users), new=len(fresh), most=most)
            if not fresh:
                return chat, []
            # Members are never removed, so a write refused for room names fewer now.
            adding = fresh

    async def history(self, cid: str, pages: Sequence[int]) -> list[MessageView]:
        async def page(number: int) -> list[Doc]:
            found: list[Doc] = await self._db.history.find(
                {"page": page_key(cid, number)}
            ).to_list()
            return found

        try:
            found = await each(pages, page)
        except PyMongoError as exc:
            raise failure(exc) from exc
        return [_message(d) for docs in found for d in docs]

    async def messages_at(self, cid: str, seqs: Sequence[int]) -> list[MessageView]:
        async def stored(seq: int) -> Doc | None:
            return await self._db.history.find_one(self._db.message(cid, seq))

        try:
            found = await each(seqs, stored)
        except PyMongoError as exc:
            raise failure(exc) from exc
        return [_message(d) for d in found if d is not None]

    async def seq_of(self, cid: str, mid: str) -> int | None:
        entry = await self._find_one(self._db.ids, {"_id": ObjectId(mid)})
        if entry is None or str(entry["cid"]) != cid:
            return None
        stored = await self._find_one(self._db.history, self._db.message(cid, entry["seq"]))
        return int(entry["seq"]) if stored is not None and stored["id"] == entry["_id"] else None

    async def activity_as_of(self, cid: str, last_seq: int, when: float) -> float | None:
        if last_seq < 1:
            return None
        oldest = max(1, last_seq - SEQS_BACK + 1)
        # First the newest page alone: a chat that moved a little has its answer there.
        seqs = SeqRange(max(oldest, page_of(last_seq) * PAGE_SIZE + 1), last_seq)
        while not seqs.empty:
            found = [m for m in await self.history(cid, seqs.pages()) if m.seq in seqs]
            found += await self.messages_at(cid, lacking(seqs, last_seq, (m.seq for m in found)))
            times = [m.at for m in found if m.at <= when]
            if times:
                return max(times)
            top = seqs.first - 1
            seqs = SeqRange(max(oldest, top - STEP + 1), top)
        if oldest == 1:
            return None

        async def moment(seq: int) -> float | None:
            found = await self.messages_at(cid, [seq])
            return found[0].at if found else None

        return await moment_at_or_before(moment, oldest - 1, when)

    async def read_markers(self, uid: int) -> dict[str, int]:
        try:
            docs = await self._db.reads.find({"u": uid}, {"cid": 1, "seq": 1}).to_list()
        except PyMongoError as exc:
            raise failure(exc) from exc
        return {str(d["cid"]): int(d["seq"]) for d in docs}

    async def read_marker(self, cid: str, uid: int) -> int:
        doc = await self._find_one(self._db.reads, self._marker(cid, uid))
        return 0 if doc is None else int(doc["seq"])

    async def move_read(self, cid: str, uid: int, seq: int) -> tuple[int, bool]:
        """Move the marker forward only; (where it is now, whether it moved).

        Two moves of one marker at once are tried again: two first marks race to insert
        (one gets a duplicate key), and on FerretDB the version guard refuses the slower
        of two updates (a stale write). Neither is the store failing."""
        marker = self._marker(cid, uid)
        on_insert = {"cid": ObjectId(cid)} | ({} if "u" in marker else {"u": uid})

        async def attempt() -> Doc | None:
            found: Doc | None = await self._db.reads.find_one_and_update(
                marker,
                {"$max": {"seq": seq}, "$inc": {"v": 1}, "$setOnInsert": on_insert},
                upsert=True,
                return_document=ReturnDocument.BEFORE,
            )
            return found

        try:
            before = await retry(
                attempt,
                retry_on=_lost_a_race,
                backoff=Backoff(0.005, 0.1),
                deadline=time.monotonic() + RACES_WITHIN,
            )
        except DuplicateKeyError as exc:
            raise StorageUnavailable("read marker: concurrent first writes") from exc
        except PyMongoError as exc:
            raise failure(exc) from exc
        old = 0 if before is None else int(before["seq"])
        return max(old, seq), seq > old

    def _marker(self, cid: str, uid: int) -> Doc:
        """The filter of one read marker. Behind a mongos it names `u`, the shard key of
        `reads`: MongoDB before 7.1 refuses a findAndModify upsert without the whole shard
        key by equality (the upsert takes `u` from the filter). Elsewhere `_id` alone:
        FerretDB would also read the user's entries of the `u` index (O(the user's
        chats))."""
        if self._db.sharded:
            return {"_id": _read_id(cid, uid), "u": uid}
        return {"_id": _read_id(cid, uid)}

    async def _find_one(self, collection: Any, query: Doc) -> Doc | None:
        try:
            doc: Doc | None = await collection.find_one(query)
        except PyMongoError as exc:
            raise failure(exc) from exc
        return doc
