"""The write path against the real services: transaction tails and overlapping owners.

- A quiet partition whose last offset is a transaction's commit marker is committed to
  its end by the watch timer and never shows as stuck (nor turns the Consul check to
  `warning`, which takes the worker out of the gateways' read set).
- Two owners of a partition writing the same records at once, over the real
  `MongoMessageLog`, store each message once: the new owner gives back an id entry it
  took over when the old owner stores the message first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import TopicPartition
from bson import ObjectId
from pymongo import AsyncMongoClient

from contracts.ids import new_id
from contracts.records import MessageRecord
from dialogue_worker.adapters.mongo import MongoDatabase
from dialogue_worker.adapters.mongo_log import MongoMessageLog
from dialogue_worker.domain.history import message_key
from dialogue_worker.domain.offsets import DurableOffsets
from dialogue_worker.domain.records import InboundRecord
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.chat_book import ChatBook
from dialogue_worker.services.health import WorkerHealth
from dialogue_worker.services.persistence import BatchPersister
from dialogue_worker.services.ports import StoredMessage
from infra.local import LocalSettings
from infra.processes.worker import WorkerProcess
from tests.integration.test_worker_commits import committed, produce_in_transactions
from tests.integration.test_worker_persistence import create_chat
from tests.support.waiting import eventually
from tests.support.worker_fakes import MemoryOutbox

Mongo = AsyncMongoClient[dict[str, Any]]
OUTSIDER = 3


async def test_a_quiet_transactional_partition_is_committed_to_its_end_and_never_stuck(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings
) -> None:
    """Before the fix the commit stopped one short of the end (the last marker) until the
    Rewinder passed it, STALL_AFTER (30 s) after the last record and up to 10 s later:
    meanwhile the partition counted as stuck and the worker's check was `warning`."""
    cid = await create_chat(worker, [1, 2])
    partition, offsets = await produce_in_transactions(infra.kafka_bootstrap, worker.topic, cid)
    tp = TopicPartition(worker.topic, partition)
    end = max(offsets) + 2  # the last record, then the last transaction's marker

    async def committed_to_end() -> bool:
        assert await worker.metric("dialogue_worker_stuck_partitions") == 0
        assert await worker.consul_status() == "passing"
        return await committed(infra.kafka_bootstrap, worker.app_id, tp) == end

    await eventually(committed_to_end, what=f"{worker.topic}/{partition} committed to {end}")
    assert await worker.metric("dialogue_worker_partitions_rewound_total") == 0
    history = mongo[worker.mongo_db]["history"]
    assert await history.count_documents({"cid": ObjectId(cid)}) == len(offsets)


class GatedLog(MongoMessageLog):
    """One writer's connection: its appends wait for `gate`."""

    def __init__(self, database: MongoDatabase) -> None:
        super().__init__(database)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def append(self, messages: Sequence[StoredMessage]) -> dict[str, int]:
        self.entered.set()
        await self.gate.wait()
        return await super().append(messages)


def writer(log: GatedLog) -> tuple[BatchPersister, MemoryOutbox]:
    """A worker's persister over the real store (its Kafka outbox kept in memory)."""

    async def ping() -> None:
        return None

    outbox = MemoryOutbox()
    health = WorkerHealth(ping, dict, stall_after=30)
    persister = BatchPersister(
        log, outbox, ChatBook(log, 5.0), health, WorkerMetrics(), ledger=DurableOffsets()
    )
    return persister, outbox


def message(topic: str, offset: int, cid: str, uid: int, mid: str) -> InboundRecord:
    value = MessageRecord(
        v=1, id=mid, cid=cid, uid=uid, text=f"m{offset}", createdAt=int(time.time())
    )
    return InboundRecord(topic, 0, offset, cid.encode(), value.to_bytes())


async def test_two_owners_of_a_partition_store_each_message_once(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings
) -> None:
    """The review's interleaving: the old owner A dead-letters r0 (its author is not a
    member yet) and claims m1 for seq 1; the new owner B, sorting after the author was
    added, takes m1's entry over for seq 2; A stores m1 at 1; B finds seq 1 taken."""
    cid = await create_chat(worker, [1, 2])
    m0, m1 = new_id(), new_id()
    batch = [message(worker.topic, 0, cid, OUTSIDER, m0), message(worker.topic, 1, cid, 1, m1)]
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    log_a, log_b = GatedLog(database), GatedLog(database)
    a, outbox_a = writer(log_a)
    b, outbox_b = writer(log_b)
    db = mongo[worker.mongo_db]
    try:
        old = asyncio.create_task(a.persist(batch))
        await log_a.entered.wait()
        await db["chats"].update_one(
            {"_id": ObjectId(cid)}, {"$addToSet": {"users": OUTSIDER}, "$inc": {"v": 1}}
        )
        new = asyncio.create_task(b.persist(batch))
        await log_b.entered.wait()
        log_a.gate.set()
        await old
        log_b.gate.set()
        await new
    finally:
        await database.close()

    stored = await db["history"].find({"cid": ObjectId(cid)}, {"seq": 1, "id": 1}).to_list()
    assert {d["seq"]: str(d["id"]) for d in stored} == {1: m1, 2: m0}
    entries = await db["message_ids"].find({"cid": ObjectId(cid)}).to_list()
    assert {str(e["_id"]): e["seq"] for e in entries} == {m1: 1, m0: 2}
    chat = await db["chats"].find_one({"_id": ObjectId(cid)})
    assert chat is not None and chat["lastSeq"] == 2
    assert [d.record.offset for d in outbox_a.dead] == [0] and outbox_b.dead == []
    assert await db["history"].find_one({"_id": message_key(cid, 3)}) is None
