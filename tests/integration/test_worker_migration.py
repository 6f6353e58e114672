"""Chats stored before message store v2 count, list and show new messages after an upgrade."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from bson import ObjectId
from pymongo import AsyncMongoClient

from contracts.ids import new_id
from contracts.records import MessageRecord
from dialogue_worker.adapters.mongo import MongoDatabase
from infra.local import LocalSettings
from infra.processes.worker import WorkerProcess, produce
from tests.support.waiting import eventually


async def _get(worker: WorkerProcess, path: str, **params: str) -> Any:
    async with aiohttp.ClientSession(base_url=worker.base_url, headers=worker.headers) as http:
        async with http.get(path, params=params) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


async def test_a_chat_from_before_v2_counts_new_messages(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    worker = WorkerProcess.for_test(infra, unique)
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongo_url)
    old, grown = ObjectId(), ObjectId()
    try:
        chats = mongo[worker.mongo_db]["chats"]
        # As the store before v2 wrote them; the second had members added since (v 1).
        await chats.insert_many(
            [
                {"_id": old, "users": [1, 2], "createdAt": 1_700_000_000},
                {"_id": grown, "users": [1, 2, 3], "createdAt": 1_700_000_000, "v": 1},
            ]
        )
        await worker.start().wait_ready()
        now = int(time.time())
        records = [
            MessageRecord(v=1, id=new_id(), cid=str(cid), uid=1, text=f"{n}", createdAt=now)
            for cid in (old, grown)
            for n in range(3)
        ]
        await produce(
            infra.kafka_bootstrap, worker.topic, [(r.key(), r.to_bytes()) for r in records]
        )

        for cid in (str(old), str(grown)):
            chat = await eventually(
                lambda cid=cid: _get(worker, f"/chats/{cid}", uid="2"),
                lambda c: c["lastSeq"] == 3,
                what=f"chat {cid} counts its three messages",
            )
            assert chat["lastMessage"]["text"] == "2" and chat["unread"] == 3
            page = await _get(worker, "/messages", uid="2", cid=cid)
            assert sorted(m["seq"] for m in page["data"]) == [1, 2, 3]
        listed = await _get(worker, "/chats", uid="1")
        assert {c["id"] for c in listed["data"][:2]} == {str(old), str(grown)}
        # Once per database: a marker says the chats were given their counts.
        assert await mongo[worker.mongo_db]["migrations"].count_documents({}) == 1
    finally:
        await worker.terminate()
        await mongo.drop_database(worker.mongo_db)
        await mongo.close()


async def test_workers_starting_together_all_prepare_the_store(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    """Each migrates the chats from before v2 and makes the marker if it is missing: on
    FerretDB the version guard refuses all but the first write of one chat, and the
    marker's insert races; none of them fails."""
    name = unique("migrating").replace("-", "_")
    stores = [MongoDatabase(infra.mongo_url, name, timeout=10) for _ in range(4)]
    old = [{"_id": ObjectId(), "users": [1, 2], "createdAt": 1_700_000_000} for _ in range(50)]
    try:
        await stores[0].client[name]["chats"].insert_many(old)
        await asyncio.gather(*(store.open() for store in stores))
        assert await stores[0].db["migrations"].count_documents({}) == 1
        migrated = await stores[0].chats.find({"lastSeq": 0}).to_list()
        assert len(migrated) == 50
    finally:
        await stores[0].client.drop_database(name)
        await asyncio.gather(*(store.close() for store in stores))
