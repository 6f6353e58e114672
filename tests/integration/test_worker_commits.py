"""A real worker commits what it made durable, and moves past offsets that hold no record.

A transactional producer leaves a marker after each transaction: an offset no consumer
is handed. The worker's commit stops at every such hole until Kafka shows it empty, then
goes on to the partition's end; no record is stored twice or left out.
"""

from __future__ import annotations

import time
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from bson import ObjectId
from pymongo import AsyncMongoClient

from contracts.ids import new_id
from contracts.records import MessageRecord
from dialogue_worker.adapters.commits import KafkaPositions
from infra.local import LocalSettings
from infra.processes.worker import WorkerProcess
from tests.integration.test_worker_persistence import create_chat
from tests.support.waiting import eventually

Mongo = AsyncMongoClient[dict[str, Any]]
TRANSACTIONS = 5
PER_TRANSACTION = 20


async def produce_in_transactions(bootstrap: str, topic: str, cid: str) -> tuple[int, list[int]]:
    """TRANSACTIONS transactions of PER_TRANSACTION records into the chat's partition:
    the partition and the records' offsets (the markers take the offsets between)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"test-{new_id()}", acks="all"
    )
    await producer.start()
    offsets = []
    partitions = set()
    try:
        for t in range(TRANSACTIONS):
            async with producer.transaction():
                for i in range(PER_TRANSACTION):
                    record = MessageRecord(
                        v=1,
                        id=new_id(),
                        cid=cid,
                        uid=1,
                        text=f"tx {t} message {i}",
                        createdAt=int(time.time()),
                    )
                    sent = await producer.send_and_wait(topic, record.to_bytes(), key=record.key())
                    offsets.append(sent.offset)
                    partitions.add(sent.partition)
    finally:
        await producer.stop()
    assert len(partitions) == 1  # keyed by the chat: one partition
    return partitions.pop(), offsets


async def committed(bootstrap: str, group: str, tp: TopicPartition) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    return found[tp].offset if tp in found else -1


async def test_the_commit_passes_transaction_markers_and_reaches_the_end(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings
) -> None:
    cid = await create_chat(worker, [1, 2])
    partition, offsets = await produce_in_transactions(infra.kafka_bootstrap, worker.topic, cid)
    assert len(offsets) == TRANSACTIONS * PER_TRANSACTION
    holes = {o + 1 for o in offsets} - set(offsets)  # the offsets after each transaction
    assert len(holes) >= TRANSACTIONS - 1  # markers sit between the transactions
    history = mongo[worker.mongo_db]["history"]

    async def all_stored() -> bool:
        return await history.count_documents({"cid": ObjectId(cid)}) == len(offsets)

    await eventually(all_stored, what="every record of every transaction stored")
    tp = TopicPartition(worker.topic, partition)
    end = max(offsets) + 2  # the last record, then the last transaction's marker

    async def committed_to_end() -> bool:
        return await committed(infra.kafka_bootstrap, worker.app_id, tp) == end

    await eventually(committed_to_end, what=f"{worker.topic}/{partition} committed to {end}")
    stored = await history.find({"cid": ObjectId(cid)}, {"seq": 1}).to_list()
    assert sorted(d["seq"] for d in stored) == list(range(1, len(offsets) + 1))
    assert await worker.metric("dialogue_worker_offsets_skipped_total") >= TRANSACTIONS


async def test_kafka_positions_finds_the_first_record_past_a_marker(
    worker: WorkerProcess, infra: LocalSettings
) -> None:
    cid = await create_chat(worker, [1, 2])
    partition, offsets = await produce_in_transactions(infra.kafka_bootstrap, worker.topic, cid)
    positions = KafkaPositions(infra.kafka_bootstrap, worker.app_id, worker.topic)
    await positions.start()
    try:
        tp = (worker.topic, partition)
        first_marker = offsets[PER_TRANSACTION - 1] + 1
        after = offsets[PER_TRANSACTION]
        assert await positions.first_record(tp, first_marker, after + 1) == after
        assert await positions.first_record(tp, offsets[3], after) == offsets[3]
        last_marker = offsets[-1] + 1
        assert await positions.first_record(tp, last_marker, last_marker + 1) is None
        earliest = await positions.earliest([tp])
        assert earliest[tp] == 0
    finally:
        await positions.stop()
