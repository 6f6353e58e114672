"""MongoDB: chats and messages collections, their indexes, sharding on mongos, and queries."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from contracts.records import MessageRecord
from dialogue_worker.adapters.sharding import ensure_sharding
from dialogue_worker.domain.chats import ChatView
from dialogue_worker.domain.messages import MessageView
from dialogue_worker.domain.paging import Direction, PageRequest
from dialogue_worker.errors import StorageUnavailable
from dialogue_worker.services.ports import InsertOutcome

log = logging.getLogger(__name__)
Doc = dict[str, Any]
DUPLICATE_KEY = 11000


def _chat(doc: Doc) -> ChatView:
    return ChatView(str(doc["_id"]), frozenset(doc["users"]), int(doc["createdAt"]))


def _message(doc: Doc) -> MessageView:
    return MessageView(str(doc["_id"]), str(doc["cid"]), doc["uid"], doc["text"], doc["createdAt"])


def _message_doc(record: MessageRecord) -> Doc:
    return {
        "_id": ObjectId(record.id),
        "cid": ObjectId(record.cid),
        "uid": record.uid,
        "text": record.text,
        "createdAt": record.createdAt,
    }


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

    async def insert_messages(self, messages: Sequence[MessageRecord]) -> InsertOutcome:
        """One unordered insert; ids already stored count as duplicates, not errors."""
        docs = [_message_doc(m) for m in messages]
        try:
            result = await self._messages.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if exc.details.get("writeConcernErrors") or any(
                e.get("code") != DUPLICATE_KEY for e in errors
            ):
                raise StorageUnavailable(f"bulk write failed: {errors[:1]}") from exc
            return InsertOutcome(exc.details.get("nInserted", 0), len(errors))
        except PyMongoError as exc:
            raise StorageUnavailable(str(exc)) from exc
        return InsertOutcome(len(result.inserted_ids), 0)

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
