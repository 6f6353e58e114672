"""MongoDB: chats and messages collections, their indexes, sharding on mongos, and queries."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import bson
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
)

from contracts.records import MessageRecord
from dialogue_worker.adapters.sharding import ensure_sharding
from dialogue_worker.domain.chats import ChatView
from dialogue_worker.domain.messages import MessageView
from dialogue_worker.domain.paging import Direction, PageRequest
from dialogue_worker.domain.records import RejectKind
from dialogue_worker.errors import StorageUnavailable, StoreRefused
from dialogue_worker.services.ports import InsertOutcome

log = logging.getLogger(__name__)
Doc = dict[str, Any]
DUPLICATE_KEY = 11000
#: Server error codes that mean "not now" rather than "not this": shutting down, not
#: (or no longer) primary, time limits, write conflicts, network trouble behind a mongos.
TRANSIENT_CODES = frozenset(
    {6, 7, 50, 89, 91, 112, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}
)
#: The fields a stored message and a record with the same id must agree on.
IDENTITY = ("cid", "uid", "text")


def is_transient(exc: PyMongoError) -> bool:
    """Whether retrying the same operation later can succeed."""
    if isinstance(exc, ConnectionFailure | ExecutionTimeout | WriteConcernError):
        return True
    if exc.timeout or exc.has_error_label("RetryableWriteError"):
        return True
    if exc.has_error_label("TransientTransactionError"):
        return True
    return isinstance(exc, OperationFailure) and exc.code in TRANSIENT_CODES


def _failure(exc: PyMongoError) -> StorageUnavailable | StoreRefused:
    return StorageUnavailable(str(exc)) if is_transient(exc) else StoreRefused(str(exc))


def _chat(doc: Doc) -> ChatView:
    return ChatView(str(doc["_id"]), frozenset(doc["users"]), int(doc["createdAt"]))


def _message(doc: Doc) -> MessageView:
    return MessageView(str(doc["_id"]), str(doc["cid"]), doc["uid"], doc["text"], doc["createdAt"])


def message_doc(record: MessageRecord) -> Doc:
    return {
        "_id": ObjectId(record.id),
        "cid": ObjectId(record.cid),
        "uid": record.uid,
        "text": record.text,
        "createdAt": record.createdAt,
    }


def unstorable(message: MessageRecord) -> str | None:
    """Why the message's document cannot be encoded as BSON, or None when it can."""
    try:
        bson.encode(message_doc(message))
    except (bson.errors.BSONError, OverflowError, ValueError) as exc:
        return f"cannot be encoded for MongoDB: {type(exc).__name__}: {exc}"
    return None


class MongoStore:
    """Owns the client: open() connects and prepares the schema, close() releases it."""

    def __init__(self, url: str, database: str, timeout: float) -> None:
        self._client: AsyncMongoClient[Doc] = AsyncMongoClient(
            url, timeoutMS=int(timeout * 1000), connect=False, appname="dialogue-worker"
        )
        self._db: AsyncDatabase[Doc] = self._client[database]
        self._chats: AsyncCollection[Doc] = self._db["chats"]
        self._messages: AsyncCollection[Doc] = self._db["messages"]

    async def open(self) -> None:
        """Check the server answers, create indexes, shard when behind a mongos."""
        try:
            await self.ping()
            await self._chats.create_index([("users", ASCENDING)])
            await self._messages.create_index([("cid", ASCENDING), ("_id", DESCENDING)])
            hello = await self._client.admin.command("hello")
            await ensure_sharding(self._client.admin.command, self._db.name, hello)
        except PyMongoError as exc:
            raise StorageUnavailable(f"cannot prepare MongoDB: {exc}") from exc

    async def close(self) -> None:
        await self._client.close()

    async def ping(self) -> None:
        try:
            await self._client.admin.command("ping")
        except PyMongoError as exc:
            raise StorageUnavailable(str(exc)) from exc

    def unstorable(self, message: MessageRecord) -> str | None:
        return unstorable(message)

    async def writable(self) -> None:
        try:
            await self._db["write_checks"].update_one(
                {"_id": "write-check"}, {"$set": {"at": time.time()}}, upsert=True
            )
        except PyMongoError as exc:
            raise StorageUnavailable(f"write check failed: {exc}") from exc

    async def insert_messages(self, messages: Sequence[MessageRecord]) -> InsertOutcome:
        """One unordered insert; ids already stored count as duplicates when the stored
        message is the same one, as id conflicts when it is not."""
        docs = [message_doc(m) for m in messages]
        try:
            result = await self._messages.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):
                raise StorageUnavailable(f"write concern failed: {exc.details}") from exc
            return await self._partial(docs, exc.details)
        except PyMongoError as exc:
            raise _failure(exc) from exc
        return InsertOutcome(len(result.inserted_ids), 0)

    async def _partial(self, docs: Sequence[Doc], details: Mapping[str, Any]) -> InsertOutcome:
        errors: list[Mapping[str, Any]] = details.get("writeErrors", [])
        transient = [e for e in errors if e.get("code") in TRANSIENT_CODES]
        if transient:
            raise StorageUnavailable(f"bulk write failed: {transient[0]}")
        refused: dict[int, tuple[RejectKind, str]] = {}
        duplicate = [int(e["index"]) for e in errors if e.get("code") == DUPLICATE_KEY]
        for error in errors:
            if error.get("code") != DUPLICATE_KEY:
                message = f"refused by MongoDB: code {error.get('code')}: {error.get('errmsg')}"
                refused[int(error["index"])] = (RejectKind.UNSTORABLE, message[:500])
        if duplicate:
            refused |= await self._conflicts(docs, duplicate)
        duplicates = len(duplicate) - sum(1 for i in duplicate if i in refused)
        return InsertOutcome(details.get("nInserted", 0), duplicates, refused)

    async def _conflicts(
        self, docs: Sequence[Doc], indexes: Sequence[int]
    ) -> dict[int, tuple[RejectKind, str]]:
        """Of the documents whose _id exists, those whose stored chat, author or text differ."""
        query = {"_id": {"$in": [docs[i]["_id"] for i in indexes]}}
        try:
            stored = {
                d["_id"]: d async for d in self._messages.find(query, dict.fromkeys(IDENTITY, 1))
            }
        except PyMongoError as exc:
            raise _failure(exc) from exc
        conflicts = {}
        for index in indexes:
            doc = docs[index]
            other = stored.get(doc["_id"])
            differs = [f for f in IDENTITY if other is None or other.get(f) != doc[f]]
            if differs:
                conflicts[index] = (
                    RejectKind.ID_CONFLICT,
                    f"id {doc['_id']} is already stored with another {', '.join(differs)}",
                )
        return conflicts

    async def chat_members(self, cids: Collection[str]) -> dict[str, frozenset[int]]:
        query = {"_id": {"$in": [ObjectId(c) for c in cids]}}
        try:
            docs = await self._chats.find(query, {"users": 1}).to_list()
        except PyMongoError as exc:
            raise StorageUnavailable(str(exc)) from exc
        return {str(d["_id"]): frozenset(d["users"]) for d in docs}

    async def insert_chat(self, chat: ChatView) -> None:
        doc = {"_id": ObjectId(chat.id), "users": sorted(chat.users), "createdAt": chat.created_at}
        try:
            await self._chats.insert_one(doc)
        except DuplicateKeyError as exc:  # a fresh ObjectId never collides
            raise StorageUnavailable(f"chat id collision: {chat.id}") from exc
        except PyMongoError as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def get_chat(self, cid: str) -> ChatView | None:
        try:
            doc = await self._chats.find_one({"_id": ObjectId(cid)})
        except PyMongoError as exc:
            raise StorageUnavailable(str(exc)) from exc
        return None if doc is None else _chat(doc)

    async def chats_of(self, uid: int, request: PageRequest) -> list[ChatView]:
        query: Doc = {"users": uid}
        if request.cursor:
            query["_id"] = {"$lt": ObjectId(request.cursor)}
        cursor = self._chats.find(query).sort("_id", DESCENDING).limit(request.limit + 1)
        try:
            return [_chat(d) for d in await cursor.to_list()]
        except PyMongoError as exc:
            raise StorageUnavailable(str(exc)) from exc

    async def add_members(self, cid: str, member: int, users: Sequence[int]) -> ChatView | None:
        try:
            doc = await self._chats.find_one_and_update(
                {"_id": ObjectId(cid), "users": member},
                {"$addToSet": {"users": {"$each": list(users)}}},
                return_document=ReturnDocument.AFTER,
            )
        except PyMongoError as exc:
            raise StorageUnavailable(str(exc)) from exc
        return None if doc is None else _chat(doc)

    async def messages(self, cid: str, request: PageRequest) -> list[MessageView]:
        query: Doc = {"cid": ObjectId(cid)}
        newer = request.direction is Direction.NEWER
        if request.cursor:
            query["_id"] = {"$gt" if newer else "$lt": ObjectId(request.cursor)}
        order = ASCENDING if newer else DESCENDING
        cursor = self._messages.find(query).sort("_id", order).limit(request.limit + 1)
        try:
            return [_message(d) for d in await cursor.to_list()]
        except PyMongoError as exc:
            raise StorageUnavailable(str(exc)) from exc
