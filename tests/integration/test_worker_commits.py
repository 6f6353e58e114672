"""A real worker commits what it made durable, and moves past offsets that hold no record.

A transactional producer leaves a marker after each transaction: an offset no consumer
is handed. The worker's commit stops at every such hole until Kafka shows it empty, then
goes on to the partition's end; no record is stored twice or left out. Records Kafka
deleted before the worker stored them (retention) are passed too, as lost: an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from bson import ObjectId
from pymongo import AsyncMongoClient

from contracts.ids import new_id
from contracts.records import MessageRecord
from dialogue_worker.adapters.commits import KafkaPositions
from infra.local import LocalSettings
from infra.processes.worker import WorkerProcess
from tests.integration.test_worker_persistence import create_chat, record
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


async def test_records_deleted_before_they_were_stored_are_passed_as_lost(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    """A worker stopped while its topic's retention (here DeleteRecords) removes records
    it never stored: on restart it goes on from the partition's start, counts the
    deleted offsets as lost and logs an error, and the chat's seqs stay gap-free."""
    behind = WorkerProcess.for_test(infra, unique).start()
    client: Mongo = AsyncMongoClient(infra.mongo_url)
    history = client[behind.mongo_db]["history"]
    try:
        await behind.wait_ready()
        cid = await create_chat(behind, [1, 2])
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
        await producer.start()
        try:

            async def send(n: int) -> list[tuple[int, int]]:
                sent = []
                for i in range(n):
                    r = record(cid, 1, f"message {i}")
                    meta = await producer.send_and_wait(behind.topic, r.to_bytes(), key=r.key())
                    sent.append((meta.partition, meta.offset))
                return sent

            await send(10)

            async def stored(n: int) -> bool:
                return await history.count_documents({"cid": ObjectId(cid)}) == n

            await eventually(lambda: stored(10), what="the first 10 stored")
            await eventually(behind.committed_everything, what="the first 10 committed")
            assert await behind.terminate() == 0
            later = await send(10)  # produced while the worker is down
        finally:
            await producer.stop()
        partition = later[0][0]
        first = later[0][1]
        admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
        await admin.start()
        try:  # retention, at once: the first 6 of them go
            tp = TopicPartition(behind.topic, partition)
            await admin.delete_records({tp: RecordsToDelete(before_offset=first + 6)})
        finally:
            await admin.close()

        behind.start()
        await behind.wait_ready()
        await eventually(lambda: stored(14), what="the 4 records left stored")
        await eventually(behind.committed_everything, what="committed past the deleted ones")
        seqs = sorted(d["seq"] for d in await history.find({"cid": ObjectId(cid)}).to_list())
        assert seqs == list(range(1, 15))
        assert await behind.metric("dialogue_worker_offsets_expired_total") == 6
        assert await behind.metric("dialogue_worker_offsets_skipped_total") == 0
        line = f"offsets {first}..{first + 5} were deleted by Kafka"
        assert line in behind.log_text(since_start=True)
    finally:
        await behind.terminate()
        await client.drop_database(behind.mongo_db)
        await client.close()
