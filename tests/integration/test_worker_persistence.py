"""A real worker persists records from Kafka: exactly once in effect, DLQ for the rest."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from bson import ObjectId
from pymongo import AsyncMongoClient

from contracts.ids import new_id
from contracts.records import MessageRecord
from dialogue_worker.adapters.mongo import MongoDatabase, history_doc
from dialogue_worker.adapters.mongo_chats import MongoChats
from dialogue_worker.adapters.mongo_log import INSERT_CHUNK, MongoMessageLog, id_doc
from dialogue_worker.domain.chats import ChatView, Full, preview
from dialogue_worker.domain.history import legacy_page_key, message_key
from dialogue_worker.domain.sequencing import ChatState, Known
from dialogue_worker.errors import StorageUnavailable
from dialogue_worker.services.ports import ChatAdvance, IdEntry, StoredMessage
from infra.local import LocalSettings
from infra.processes.worker import WorkerProcess, produce
from tests.support.bad_header_key import produce_with_bad_header_key
from tests.support.hostile import BROKER_LIMIT
from tests.support.waiting import NeverHappened, eventually

Mongo = AsyncMongoClient[dict[str, Any]]


async def create_chat(worker: WorkerProcess, users: list[int]) -> str:
    async with aiohttp.ClientSession(headers=worker.headers) as http:
        async with http.post(f"{worker.base_url}/chats", json={"users": users}) as resp:
            assert resp.status == 201, await resp.text()
            chat_id: str = (await resp.json())["id"]
            return chat_id


def record(cid: str, uid: int, text: str = "hello") -> MessageRecord:
    return MessageRecord(v=1, id=new_id(), cid=cid, uid=uid, text=text, createdAt=int(time.time()))


async def test_n_records_make_n_messages_with_seqs_and_redelivery_adds_none(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings
) -> None:
    cid = await create_chat(worker, [1, 2])
    records = [record(cid, 1 + i % 2, f"message {i}") for i in range(500)]
    payload = [(r.key(), r.to_bytes()) for r in records]
    history = mongo[worker.mongo_db]["history"]

    await produce(infra.kafka_bootstrap, worker.topic, payload)
    await eventually(lambda: _count_is(history, cid, 500), what="500 stored")

    duplicates_before = await worker.metric("dialogue_worker_records_duplicate_total")
    await produce(infra.kafka_bootstrap, worker.topic, payload)  # the same records again
    await eventually(
        lambda: _metric_reaches(
            worker, "dialogue_worker_records_duplicate_total", duplicates_before + 500
        ),
        what="500 duplicates counted",
    )
    stored = await history.find({"cid": ObjectId(cid)}, {"seq": 1, "id": 1, "text": 1}).to_list()
    by_seq = sorted(stored, key=lambda d: d["seq"])
    assert [d["seq"] for d in by_seq] == list(range(1, 501))  # one per record, gap-free
    assert [str(d["id"]) for d in by_seq] == [r.id for r in records]  # in partition order
    assert [d["text"] for d in by_seq] == [r.text for r in records]
    ids = mongo[worker.mongo_db]["message_ids"]
    assert await ids.count_documents({"cid": ObjectId(cid)}) == 500


async def _count_is(history: Any, cid: str, n: int) -> bool:
    return bool(await history.count_documents({"cid": ObjectId(cid)}) == n)


async def _metric_reaches(worker: WorkerProcess, name: str, value: float) -> bool:
    return await worker.metric(name) >= value


async def test_invalid_and_non_member_records_go_to_the_dlq_with_reasons(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings
) -> None:
    cid = await create_chat(worker, [1, 2])
    valid = [record(cid, 1, "ok 1"), record(cid, 2, "ok 2")]
    good = valid[0].model_dump()
    bad: dict[str, bytes] = {
        "malformed": b"{not json",
        "missing": orjson.dumps({k: v for k, v in good.items() if k != "uid"} | {"id": new_id()}),
        "oversized": orjson.dumps(good | {"id": new_id(), "text": "x" * 5000}),
        "not_member": record(cid, 99).to_bytes(),
        "unknown_chat": record(unknown := new_id(), 1).to_bytes(),
    }
    payload = [(cid.encode(), v) for v in bad.values()] + [(r.key(), r.to_bytes()) for r in valid]

    consumer = AIOKafkaConsumer(
        worker.dlq_topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await produce(infra.kafka_bootstrap, worker.topic, payload)
        letters: list[Any] = []

        # This test's only: the module's tests share the DLQ. The unknown chat's record
        # is forwarded to its own chat's partition first, keyed by that chat.
        ours = {cid.encode(), unknown.encode()}

        async def read_dead() -> int:
            for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                letters.extend(m for m in msgs if m.key in ours)
            return len(letters)

        with contextlib.suppress(NeverHappened):  # the assertions below name what is missing
            await eventually(read_dead, lambda n: n >= len(bad), every=0)
        # Every dead letter these records cause is written before their offsets commit;
        # once all are committed, read the DLQ to its end so a late duplicate shows too.
        await eventually(worker.committed_everything, what="every record committed")
        ends = await consumer.end_offsets(list(consumer.assignment()))

        async def read_to_end() -> bool:
            await read_dead()
            return all([await consumer.position(tp) >= end for tp, end in ends.items()])

        await eventually(read_to_end, every=0, what="the DLQ read to its end")
    finally:
        await consumer.stop()

    # The original values, each exactly once.
    assert Counter(m.value for m in letters) == Counter(bad.values())
    dead = {m.value: dict(m.headers) for m in letters}
    reasons = {name: dead[value]["x-dlq-reason"].decode() for name, value in bad.items()}
    kinds = {name: dead[value]["x-dlq-kind"].decode() for name, value in bad.items()}
    assert "malformed JSON" in reasons["malformed"]
    assert reasons["missing"].startswith("uid")
    assert reasons["oversized"].startswith("text")
    assert "not a member" in reasons["not_member"]
    assert "unknown chat" in reasons["unknown_chat"]
    assert kinds == {
        "malformed": "invalid",
        "missing": "invalid",
        "oversized": "invalid",
        "not_member": "not_member",
        "unknown_chat": "unknown_chat",
    }
    assert all(h["x-dlq-topic"] == worker.topic.encode() for h in dead.values())
    await eventually(lambda: _count_is(mongo[worker.mongo_db]["history"], cid, 2), what="2 stored")
    assert await worker.metric("dialogue_worker_dlq_records_total") >= 5


async def test_a_header_key_that_is_not_utf8_stops_nothing(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings
) -> None:
    """aiokafka cannot decode such a key: the worker crashed on it, and so did every
    worker its partition moved to. Now the record is stored, or dead-lettered with its
    headers (the key with replacement characters), and the partition goes on."""
    cid = await create_chat(worker, [1, 2])
    first, second, last = record(cid, 1, "before"), record(cid, 2, "odd header"), record(cid, 1)
    invalid = orjson.dumps(second.model_dump() | {"id": new_id(), "uid": "x"})
    consumer = AIOKafkaConsumer(
        worker.dlq_topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await produce(infra.kafka_bootstrap, worker.topic, [(first.key(), first.to_bytes())])
        await produce_with_bad_header_key(
            infra.kafka_bootstrap,
            worker.topic,
            [(second.key(), second.to_bytes()), (cid.encode(), invalid)],
        )
        await produce(infra.kafka_bootstrap, worker.topic, [(last.key(), last.to_bytes())])
        history = mongo[worker.mongo_db]["history"]
        await eventually(lambda: _count_is(history, cid, 3), what="3 stored", within=60)
        dead = []

        async def read_dead() -> int:  # the module's earlier tests dead-lettered too
            for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                dead.extend(m for m in msgs if m.key == cid.encode())
            return len(dead)

        await eventually(read_dead, lambda n: n >= 1, every=0, what="the dead letter")
    finally:
        await consumer.stop()
    stored = await history.find({"cid": ObjectId(cid)}).sort("seq", 1).to_list()
    assert [d["text"] for d in stored] == ["before", "odd header", last.text]
    [letter] = dead
    assert letter.value == invalid
    assert dict(letter.headers)["x-dlq-kind"] == b"invalid"
    assert ("\ufffd\ufffd", b"v") in letter.headers  # its own header, the key replaced
    assert worker.returncode is None  # still running


async def test_a_dead_letter_keeps_a_null_header_value_null(
    worker: WorkerProcess, infra: LocalSettings
) -> None:
    """Kafka allows a header without a value; the dead letter is the record as it came,
    to replay as is, and used to carry an empty value instead."""
    cid = await create_chat(worker, [1, 2])
    invalid = orjson.dumps(record(cid, 1, "refused").model_dump() | {"uid": "x"})
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    consumer = AIOKafkaConsumer(
        worker.dlq_topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    try:
        headers = [("trace", None), ("empty", b"")]
        sent = await producer.send_and_wait(
            worker.topic, invalid, key=cid.encode(), headers=headers, timestamp_ms=1_600_000_000_123
        )
        dead: list[Any] = []

        async def read_dead() -> int:  # the module's earlier tests dead-lettered too
            for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                dead.extend(m for m in msgs if m.value == invalid)
            return len(dead)

        await eventually(read_dead, lambda n: n >= 1, every=0, what="the dead letter")
    finally:
        await consumer.stop()
        await producer.stop()
    own = [h for h in dead[0].headers if not h[0].startswith("x-dlq-")]
    assert own == [("trace", None), ("empty", b"")]
    # When the source was written, which retention may take from the source topic: its
    # arrival, as the worker creates its topics with LogAppendTime (the producer's own
    # 1_600_000_000_123 would have made retention delete it at once).
    assert dict(dead[0].headers)["x-dlq-timestamp"] == str(sent.timestamp).encode()
    assert sent.timestamp_type == 1 and sent.timestamp > 1_600_000_000_123


def _produce_null_records(bootstrap: str, topic: str, cid: str, marker: bytes) -> None:
    """A record with neither key nor value and a keyed tombstone, as librdkafka writes
    them (aiokafka refuses the first), each marked by a header."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap})
    failures: list[str] = []
    for key in (None, cid.encode()):
        producer.produce(
            topic,
            None,
            key,
            headers=[("marker", marker)],
            on_delivery=lambda err, _: err and failures.append(str(err)),
        )
    assert producer.flush(30) == 0 and failures == [], failures


async def test_records_without_a_value_are_dead_lettered_and_stop_nothing(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings
) -> None:
    """A null value (with or without a key) is no record; the dead letter of one with
    neither key nor value needs a value, and once crashed the agent at every try."""
    cid = await create_chat(worker, [1, 2])
    marker = new_id().encode()
    consumer = AIOKafkaConsumer(
        worker.dlq_topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        await asyncio.to_thread(
            _produce_null_records, infra.kafka_bootstrap, worker.topic, cid, marker
        )
        after = record(cid, 1, "after the null records")
        await produce(infra.kafka_bootstrap, worker.topic, [(after.key(), after.to_bytes())])
        dead: list[Any] = []

        async def read_dead() -> int:
            for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                dead.extend(m for m in msgs if dict(m.headers).get("marker") == marker)
            return len(dead)

        await eventually(read_dead, lambda n: n >= 2, every=0, what="both dead letters")
    finally:
        await consumer.stop()
    by_key = {m.key: m for m in dead}
    assert set(by_key) == {None, cid.encode()}
    unkeyed, tombstone = by_key[None], by_key[cid.encode()]
    assert unkeyed.value == b"" and dict(unkeyed.headers)["x-dlq-null-record"] == b"1"
    assert tombstone.value is None and "x-dlq-null-record" not in dict(tombstone.headers)
    for letter in dead:
        assert dict(letter.headers)["x-dlq-kind"] == b"invalid"
    history = mongo[worker.mongo_db]["history"]
    await eventually(lambda: _count_is(history, cid, 1), what="the record after them stored")
    stored = await history.find_one({"cid": ObjectId(cid)})
    assert stored is not None and (str(stored["id"]), stored["seq"]) == (after.id, 1)


async def test_a_record_at_the_broker_limit_is_dead_lettered_cut_and_the_next_one_stored(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings
) -> None:
    """Its dead letter, with the x-dlq-* headers, would not fit in a request: the worker
    cuts the value (saying so) instead of retrying a send Kafka will never take."""
    cid = await create_chat(worker, [1, 2])
    huge = b"x" * (BROKER_LIMIT - 200)  # invalid JSON of almost the broker's limit
    after = record(cid, 1, "behind the huge one")
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, acks="all", max_request_size=BROKER_LIMIT
    )
    await producer.start()
    try:
        await producer.send_and_wait(worker.topic, huge, key=cid.encode())
        await producer.send_and_wait(worker.topic, after.to_bytes(), key=after.key())
    finally:
        await producer.stop()

    await eventually(lambda: _count_is(mongo[worker.mongo_db]["history"], cid, 1), what="stored")
    consumer = AIOKafkaConsumer(
        worker.dlq_topic,
        bootstrap_servers=infra.kafka_bootstrap,
        auto_offset_reset="earliest",
        fetch_max_bytes=4 * BROKER_LIMIT,
        max_partition_fetch_bytes=4 * BROKER_LIMIT,
    )
    await consumer.start()
    try:
        found: list[Any] = []

        async def read_dead() -> int:
            for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                found.extend(m for m in msgs if m.key == cid.encode())
            return len(found)

        await eventually(read_dead, lambda n: n >= 1, every=0, what="the dead letter")
    finally:
        await consumer.stop()
    headers = dict(found[0].headers)
    assert headers["x-dlq-kind"] == b"invalid"
    assert headers["x-dlq-truncated"] == str(len(huge)).encode()
    assert huge.startswith(found[0].value) and len(found[0].value) > len(huge) - 1000


async def _messages_of(worker: WorkerProcess, cid: str, uid: int) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession(headers=worker.headers) as http:
        params = {"uid": str(uid), "cid": cid, "limit": "200"}
        async with http.get(f"{worker.base_url}/messages", params=params) as resp:
            assert resp.status == 200, await resp.text()
            data: list[dict[str, Any]] = (await resp.json())["data"]
            return data


async def test_an_id_stored_with_other_content_is_dead_lettered_as_an_id_conflict(
    worker: WorkerProcess, infra: LocalSettings
) -> None:
    """A producer that knows (or predicts) a message id cannot replace that message."""
    cid = await create_chat(worker, [1, 2])
    real = record(cid, 1, "the real message")
    await produce(infra.kafka_bootstrap, worker.topic, [(real.key(), real.to_bytes())])
    await eventually(lambda: _messages_of(worker, cid, 1), lambda found: len(found) == 1)
    conflicts = await worker.metric("dialogue_worker_id_conflicts_total")
    duplicates = await worker.metric("dialogue_worker_records_duplicate_total")

    forged = [
        MessageRecord(**(real.model_dump() | change))
        for change in ({"text": "forged"}, {"uid": 2}, {"cid": await create_chat(worker, [1, 2])})
    ]
    payload = [(f.key(), f.to_bytes()) for f in forged] + [(real.key(), real.to_bytes())]
    consumer = AIOKafkaConsumer(
        worker.dlq_topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        await consumer.seek_to_end()
        await produce(infra.kafka_bootstrap, worker.topic, payload)
        letters: dict[bytes, dict[str, bytes]] = {}

        async def read_letters() -> int:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                letters.update({m.value: dict(m.headers) for m in msgs if m.value})
            return len(letters)

        await eventually(read_letters, lambda n: n >= len(forged))
    finally:
        await consumer.stop()

    assert set(letters) == {f.to_bytes() for f in forged}
    assert {h["x-dlq-kind"] for h in letters.values()} == {b"id_conflict"}
    assert all(
        b"another chat, or stored with another" in h["x-dlq-reason"] for h in letters.values()
    )
    await eventually(  # counted once the dead letters are sent: maybe after they are read
        lambda: worker.metric("dialogue_worker_id_conflicts_total"),
        lambda n: n == conflicts + 3,
    )
    await eventually(
        lambda: worker.metric("dialogue_worker_records_duplicate_total"),
        lambda n: n == duplicates + 1,  # the real one again: a harmless duplicate
    )
    [stored] = await _messages_of(worker, cid, 1)
    assert (stored["id"], stored["uid"], stored["text"]) == (real.id, 1, "the real message")


async def test_stuck_partitions_are_exported(worker: WorkerProcess) -> None:
    async with aiohttp.ClientSession(headers=worker.headers) as http:
        async with http.get(f"{worker.base_url}/metrics") as resp:
            text = await resp.text()
    samples = [line for line in text.splitlines() if line.startswith("dialogue_worker_stuck_")]
    assert samples == ["dialogue_worker_stuck_partitions 0.0"]  # exported, and none is stuck


async def test_chats_advance_together_and_a_stale_state_moves_none_back(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings
) -> None:
    """`advance` on the real server, for more chats at once than FerretDB 1.x has
    PostgreSQL connections (50; one bulk command of that many updates wedged it): each
    chat moves to its own state, and a state behind the stored one changes nothing."""
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    store = MongoMessageLog(database)
    try:
        cids = [await create_chat(worker, [1, 2 + i]) for i in range(64)]

        def move(cid: str, seq: int) -> ChatAdvance:
            last = preview(new_id(), seq, 1, f"message {seq}", time.time())
            return ChatAdvance(cid, ChatState(seq, 0, 10 * seq), time.time(), last)

        await store.advance([move(cid, 3) for cid in cids])
        stale, ahead = cids[:32], cids[32:]
        await store.advance([move(cid, 2) for cid in stale] + [move(cid, 4) for cid in ahead])
        await store.advance([])
        chats = {
            str(c["_id"]): c
            async for c in mongo[worker.mongo_db]["chats"].find(
                {"_id": {"$in": [ObjectId(cid) for cid in cids]}}
            )
        }
        assert len(chats) == 64
        for cid in stale:
            # v: 1 when the chat was opened (its chat.created out), +1 per advance applied
            assert (chats[cid]["lastSeq"], chats[cid]["lastOffset"], chats[cid]["v"]) == (3, 30, 2)
            assert chats[cid]["lastMessage"]["text"] == "message 3"
        for cid in ahead:
            assert (chats[cid]["lastSeq"], chats[cid]["lastOffset"], chats[cid]["v"]) == (4, 40, 3)
            assert chats[cid]["lastMessage"]["text"] == "message 4"
        assert {c["lastPart"] for c in chats.values()} == {0}
        await database.ping()  # the server still answers
    finally:
        await database.close()


async def test_messages_stored_with_pages_of_another_size_are_still_read(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings
) -> None:
    """History written before pages of 25 carries page keys of 100 (`<cid>:<page>`): a read
    finds what its pages lack by each message's key, so nothing counted goes missing."""
    cid = await create_chat(worker, [1, 2])
    records = [record(cid, 1, f"message {i}") for i in range(60)]
    await produce(infra.kafka_bootstrap, worker.topic, [(r.key(), r.to_bytes()) for r in records])
    history = mongo[worker.mongo_db]["history"]
    chats = mongo[worker.mongo_db]["chats"]

    async def counted() -> bool:
        chat = await chats.find_one({"_id": ObjectId(cid)})
        return chat is not None and chat.get("lastSeq") == 60

    await eventually(counted, what="60 stored and counted")
    for seq in range(1, 41):  # the old key: pages of 100, without the size
        await history.update_one(
            {"_id": message_key(cid, seq)}, {"$set": {"page": f"{cid}:{0:010d}"}}
        )

    data = await _messages_of(worker, cid, 1)
    assert [m["seq"] for m in data] == list(range(60, 0, -1))
    assert [m["text"] for m in data] == [f"message {i}" for i in range(59, -1, -1)]


async def test_a_chat_is_ranked_by_its_activity_as_of_a_past_moment(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings
) -> None:
    """The chat list ranks a chat that moved since its snapshot by what it had then: read
    back from its newest page, then 100 messages at a time (pages read together), up to
    1,000 messages; past that one message at a time, searching back by key."""
    cid = await create_chat(worker, [1, 2])
    history = await _history_of(mongo, worker, cid, 1_200)
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    chats = MongoChats(database)
    try:
        assert await chats.activity_as_of(cid, 0, 5_000.0) is None  # no messages
        assert await chats.activity_as_of(cid, 250, 1_100.5) == 1_100.0  # 150 back
        assert await chats.activity_as_of(cid, 250, 1_000.5) is None  # all came later
        assert await chats.activity_as_of(cid, 1_200, 1_201.5) == 1_201.0  # 999 back
        # Past 1,000 back, one message at a time by key: back in doubling steps, halving.
        assert await chats.activity_as_of(cid, 1_200, 1_200.5) == 1_200.0  # 1,000 back
        assert await chats.activity_as_of(cid, 1_200, 1_003.5) == 1_003.0
        assert await chats.activity_as_of(cid, 1_200, 1_000.5) is None
        assert await chats.activity_as_of(cid, 1_200, 2_000.5) == 2_000.0  # 200 back
        # Mid-page: seqs past the chat's count (a crash's leftovers) never rank it.
        assert await chats.activity_as_of(cid, 260, 1_270.5) == 1_260.0
        for seq in range(1, 101):  # stored with pages of 100: found by key
            await history.update_one({"_id": message_key(cid, seq)}, {"$set": {"page": "old"}})
        assert await chats.activity_as_of(cid, 250, 1_050.5) == 1_050.0
    finally:
        await database.close()


@pytest.mark.parametrize("sharded", [False, True])
async def test_restamp_sets_the_moment_of_those_messages_only(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings, sharded: bool
) -> None:
    cid = await create_chat(worker, [1, 2])
    history = await _history_of(mongo, worker, cid, 40)
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    database.sharded = sharded  # FerretDB is not a mongos: the filter is what is tested
    log = MongoMessageLog(database)
    try:
        await log.restamp([(cid, seq) for seq in range(21, 41)], 5_000.5)
        assert await log.counts([cid, new_id()]) == {cid: 0}  # an unknown chat is left out
    finally:
        await database.close()
    stored = await history.find({"cid": ObjectId(cid)}, {"seq": 1, "at": 1}).to_list()
    at = {d["seq"]: d["at"] for d in stored}
    assert at == {seq: 1_000.0 + seq if seq <= 20 else 5_000.5 for seq in range(1, 41)}


async def _history_of(mongo: Mongo, worker: WorkerProcess, cid: str, n: int) -> Any:
    """The history collection, holding seqs 1..n of the chat, seq s stored at 1,000 + s."""
    history = mongo[worker.mongo_db]["history"]
    messages = [
        StoredMessage(cid, seq, new_id(), 1, f"m{seq}", 1_000, 1_000.0 + seq, 0, seq)
        for seq in range(1, n + 1)
    ]
    await history.insert_many([history_doc(m) for m in messages])
    return history


@pytest.mark.parametrize("sharded", [False, True])
async def test_a_message_stored_with_pages_of_100_is_found_by_its_key(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings, sharded: bool
) -> None:
    """Behind a mongos a look-up by key names the page too (history's shard key), so it
    must name either key a message may carry: with only the key of pages of 25 it found
    nothing stored with pages of 100, whose look-ups are how such history is still read
    (found in review, 2026-12-04)."""
    cid = await create_chat(worker, [1, 2])
    history = await _history_of(mongo, worker, cid, 130)
    for seq in range(1, 131):
        await history.update_one(
            {"_id": message_key(cid, seq)}, {"$set": {"page": legacy_page_key(cid, seq)}}
        )
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    database.sharded = sharded  # FerretDB is not a mongos: the filter is what is tested
    chats = MongoChats(database)
    try:
        found = await chats.messages_at(cid, [1, 100, 101, 130])
        assert [(m.seq, m.text) for m in found] == [(s, f"m{s}") for s in (1, 100, 101, 130)]
        assert await chats.activity_as_of(cid, 130, 1_050.5) == 1_050.0
    finally:
        await database.close()


async def test_a_claim_writes_each_chats_entries_up_to_the_first_id_already_there(
    worker: WorkerProcess, infra: LocalSettings
) -> None:
    """A chat's entries are written from its lowest seq and none past an id that is there
    already (a copy of a stored message the plan counted as new): left above it, a crash
    made them seats nobody fills below. Every entry not reported is written, and none
    that is reported was, across commands of whole chats sent at once."""
    hot = ObjectId()
    taken_in_hot = INSERT_CHUNK + 3
    entries = [
        IdEntry(new_id(), str(hot), 1_000 + i, 1, "h", 0, i) for i in range(2 * INSERT_CHUNK + 7)
    ]
    there = [entries[taken_in_hot]]
    for n in range(3 * INSERT_CHUNK):  # chats of 1 to 3 entries; in every fifth, the lowest taken
        cid = str(ObjectId())
        run = [IdEntry(new_id(), cid, 3 + k, 1, "h", 0, k) for k in range(1 + n % 3)]
        entries += run
        if n % 5 == 0:
            there.append(run[0])
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    log = MongoMessageLog(database)
    try:
        await database.ids.insert_many([id_doc(e) for e in there])
        # Sent in another order than the seqs: each chat is still written from its lowest.
        unwritten = await log.claim(list(reversed(entries)))
        assert {e.id for e in there} <= unwritten
        ids = [ObjectId(e.id) for e in entries]
        written = {str(d["_id"]) async for d in database.ids.find({"_id": {"$in": ids}})}
        assert written == {e.id for e in entries if e.id not in unwritten} | {e.id for e in there}
        for cid in {e.cid for e in entries}:
            run = sorted((e for e in entries if e.cid == cid), key=lambda e: e.seq)
            first_unwritten = next((e.seq for e in run if e.id in unwritten), None)
            if first_unwritten is not None:  # nothing of this chat written above it
                assert all(e.id in unwritten for e in run if e.seq >= first_unwritten), cid
        hot_left = {e.id for e in entries[:taken_in_hot]} - unwritten
        assert len(hot_left) == taken_in_hot  # the hot chat up to its taken id, in full
        # What was not tried is written by the next claim.
        again = [e for e in entries if e.id in unwritten and e not in there]
        assert again and await log.claim(again) == set()
    finally:
        await database.close()


async def test_an_append_sent_as_several_commands_tells_every_taken_seq_by_its_chat(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings
) -> None:
    """`append` sends a batch as commands of INSERT_CHUNK documents at once: every
    document is tried whichever command met a seq another message holds, and the lowest
    such seq per chat is told."""
    cid = await create_chat(worker, [1, 2])
    n = 3 * INSERT_CHUNK + 7
    entries = [IdEntry(new_id(), cid, 1_000 + i, 1, "h", 0, i) for i in range(n)]
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    log = MongoMessageLog(database)
    try:
        messages = [
            StoredMessage(cid, 1_000 + i, entries[i].id, 1, f"m{i}", 1_000, 2_000.0, 0, i)
            for i in range(n)
        ]
        held = {INSERT_CHUNK + 3, 2 * INSERT_CHUNK + 5}  # another message holds these seqs
        await database.history.insert_many(
            [history_doc(replace(messages[i], id=new_id())) for i in sorted(held)]
        )
        assert await log.append(messages) == {cid: 1_000 + min(held)}
        assert await database.history.count_documents({"cid": ObjectId(cid)}) == n
        assert await log.append(messages[:INSERT_CHUNK]) == {}  # all there, all this batch's
    finally:
        await database.close()


@pytest.mark.parametrize("sharded", [False, True])
async def test_retract_and_reclaim_change_only_what_this_attempt_wrote(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings, sharded: bool
) -> None:
    """`retract` removes a message only with this attempt's id and `at` (never a copy
    another writer stored at the seq); `reclaim` moves an id entry only while it points
    where it did when looked up and its message is not stored there."""
    cid = await create_chat(worker, [1, 2])
    history = await _history_of(mongo, worker, cid, 2)
    stored = await history.find_one({"_id": message_key(cid, 2)})
    assert stored is not None
    theirs = StoredMessage(cid, 2, str(stored["id"]), 1, "m2", 1_000, 1_002.0, 0, 2)
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    database.sharded = sharded
    log = MongoMessageLog(database)
    try:
        await log.retract([replace(theirs, at=9_999.0)])  # same id, another attempt's `at`
        assert await history.count_documents({"cid": ObjectId(cid)}) == 2
        await log.retract([theirs])
        assert await history.count_documents({"cid": ObjectId(cid)}) == 1

        entry = IdEntry(new_id(), cid, 5, 1, "h", 0, 5, writer="a")
        assert await log.claim([entry]) == set()
        as_claimed = Known(cid, 5, 1, "h", False, writer="a", version=0)
        assert await log.known([entry.id]) == {entry.id: as_claimed}
        moved = replace(entry, seq=6, writer="b")
        assert await log.reclaim([moved], {entry.id: replace(as_claimed, seq=4)}) == {entry.id}
        assert await log.reclaim([moved], {entry.id: replace(as_claimed, writer="c")}) == {entry.id}
        assert await log.known([entry.id]) == {entry.id: as_claimed}
        assert await log.reclaim([moved], {entry.id: as_claimed}) == set()
        assert await log.known([entry.id]) == {
            entry.id: Known(cid, 6, 1, "h", False, writer="b", version=1)
        }
        # An entry written before entries had a writer is known and taken over as `None`'s.
        old = IdEntry(new_id(), cid, 8, 1, "h", 0, 8)
        legacy = {k: v for k, v in id_doc(old).items() if k not in ("w", "n", "v")}
        await database.ids.insert_one(legacy)
        assert await log.known([old.id]) == {old.id: Known(cid, 8, 1, "h", False)}
        pinned = replace(old, writer="b", pinned=True)
        assert await log.reclaim([pinned], {old.id: Known(cid, 8, 1, "h", False)}) == set()
        assert (await log.known([old.id]))[old.id] == Known(
            cid, 8, 1, "h", False, writer="b", pinned=True, version=1
        )

        # An entry whose message is stored: known as applied, with the stored createdAt.
        first = await history.find_one({"_id": message_key(cid, 1)})
        assert first is not None
        mid = str(first["id"])
        assert await log.claim([IdEntry(mid, cid, 1, 1, "h1", 0, 1)]) == set()
        assert await log.known([mid]) == {mid: Known(cid, 1, 1, "h1", True, 1_000, version=0)}
        # ... never moved off the seq its message is stored at, even while it points there.
        stored_at_1 = Known(cid, 1, 1, "h1", False, version=0)
        assert await log.reclaim([IdEntry(mid, cid, 7, 1, "h1", 0, 1)], {mid: stored_at_1}) == {mid}
        assert (await log.known([mid]))[mid].seq == 1
        # An entry whose seq holds another message: known as taken (it never holds a seat).
        elsewhere = IdEntry(new_id(), cid, 1, 1, "h", 0, 9)
        assert await log.claim([elsewhere]) == set()
        found = await log.known([elsewhere.id])
        assert found == {elsewhere.id: Known(cid, 1, 1, "h", False, taken=True, version=0)}

        # An append tells, per chat, the lowest seq it found holding another message
        # (seq 1 holds the chat's first; 2 was retracted above, so it is stored now).
        mine = [
            StoredMessage(cid, seq, new_id(), 1, f"x{seq}", 1_000, 3_000.0, 0, seq)
            for seq in (1, 2)
        ]
        assert await log.append([replace(mine[0], id=mid), mine[1]]) == {}  # 1: the same id
        assert await log.append(mine) == {cid: 1}
    finally:
        await database.close()


async def test_of_two_owners_moving_one_entry_at_once_only_one_moves_it(
    worker: WorkerProcess, infra: LocalSettings
) -> None:
    """FerretDB checks an update's filter, then writes the document by `_id` alone: two
    owners that looked an entry up and moved it at once both matched it, and each stored
    its message at its own seq: one message twice in history (found in review). The
    entry's version, guarded by PostgreSQL, lets only the first rewrite apply."""
    cid = await create_chat(worker, [1, 2])
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    log = MongoMessageLog(database)
    try:
        entries = [IdEntry(new_id(), cid, 50, 1, "h", 0, i, writer="dead") for i in range(120)]
        assert await log.claim(entries) == set()
        was = await log.known([e.id for e in entries])
        assert {k.version for k in was.values()} == {0}
        ours = [replace(e, seq=100 + i, writer="a") for i, e in enumerate(entries)]
        theirs = [replace(e, seq=300 + i, writer="b") for i, e in enumerate(entries)]
        left_a, left_b = await asyncio.gather(log.reclaim(ours, was), log.reclaim(theirs, was))
        assert left_a | left_b == {e.id for e in entries}  # nobody moved one both moved
        assert not left_a & left_b  # and each was moved by one of them
        now = await log.known([e.id for e in entries])
        for e in entries:
            winner = "b" if e.id in left_a else "a"
            assert (now[e.id].writer, now[e.id].version) == (winner, 1)
    finally:
        await database.close()


@pytest.mark.parametrize("sharded", [False, True])
async def test_read_markers_move_forward_with_the_filter_of_either_deployment(
    worker: WorkerProcess, infra: LocalSettings, sharded: bool
) -> None:
    """Behind a mongos a marker is addressed with its shard key `u` as well (an upsert
    through mongos before MongoDB 7.1 needs it); either filter first inserts the marker,
    then moves it forward only, and the user's markers are found by `u`."""
    cid = await create_chat(worker, [1, 2])
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    database.sharded = sharded  # FerretDB is not a mongos: the filter is what is tested
    chats = MongoChats(database)
    try:
        assert await chats.read_marker(cid, 1) == 0
        assert await chats.move_read(cid, 1, 3) == (3, True)  # inserted
        assert await chats.move_read(cid, 1, 2) == (3, False)  # never back
        assert await chats.move_read(cid, 1, 5) == (5, True)
        assert await chats.read_marker(cid, 1) == 5
        assert await chats.read_marker(cid, 2) == 0
        assert (await chats.read_markers(1))[cid] == 5
    finally:
        await database.close()


@pytest.mark.parametrize("sharded", [False, True])
async def test_a_message_is_found_by_seq_and_by_id_with_the_filter_of_either_deployment(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings, sharded: bool
) -> None:
    """Behind a mongos a message is addressed with its shard key `page` as well, so a
    look-up goes to one shard: by seq, by id, and where an id entry points."""
    cid = await create_chat(worker, [1, 2])
    history = await _history_of(mongo, worker, cid, 3)
    second = await history.find_one({"_id": message_key(cid, 2)})
    assert second is not None
    mid = str(second["id"])
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    database.sharded = sharded
    chats, log = MongoChats(database), MongoMessageLog(database)
    try:
        assert [m.seq for m in await chats.messages_at(cid, [1, 3, 4])] == [1, 3]
        assert await log.claim([IdEntry(mid, cid, 2, 1, "h2", 0, 2)]) == set()
        assert await chats.seq_of(cid, mid) == 2
        assert await chats.seq_of(new_id(), mid) is None  # another chat's id
        assert await log.known([mid]) == {mid: Known(cid, 2, 1, "h2", True, 1_000, version=0)}
    finally:
        await database.close()


@pytest.mark.parametrize("sharded", [False, True])
async def test_moves_of_one_read_marker_at_once_all_land_and_the_highest_wins(
    worker: WorkerProcess, infra: LocalSettings, sharded: bool
) -> None:
    """Many moves of one marker at once (two tabs, a burst of scrolling): on FerretDB the
    version guard refuses all but one of a round of updates and two first marks race to
    insert. Each move answers, none is an error, and the marker ends at the highest."""
    cid = await create_chat(worker, [1, 2])
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    database.sharded = sharded
    chats = MongoChats(database)
    try:
        moved = await asyncio.gather(*(chats.move_read(cid, 1, seq) for seq in range(1, 25)))
        assert all(1 <= at <= 24 for at, _ in moved)
        assert any(changed for _, changed in moved)
        assert await chats.read_marker(cid, 1) == 24
    finally:
        await database.close()


async def test_members_are_added_up_to_the_limit_and_never_past_it_at_once(
    worker: WorkerProcess, infra: LocalSettings
) -> None:
    """The limit is part of the one write that adds: naming members already in the chat
    does not count against it, and adders racing for the last places never take the chat
    past it (on FerretDB the version guard refuses the stale ones, retried here as the
    gateway retries a 5030)."""
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    chats = MongoChats(database)

    async def add(cid: str, users: list[int], most: int) -> object:
        for _ in range(200):
            try:
                return await chats.add_members(cid, 1, users, most)
            except StorageUnavailable:
                continue  # a stale write: another adder changed the chat first
        raise AssertionError("always stale")

    try:
        cid = await create_chat(worker, [1, 2])
        grown = await add(cid, [1, 2, 3, 4], 4)  # two new: room for them
        assert isinstance(grown, tuple) and grown[1] == [3, 4]
        assert grown[0].users == {1, 2, 3, 4}
        assert await add(cid, [2, 5], 4) == Full(members=4, new=1, most=4)
        again = await add(cid, [3, 1], 4)
        assert isinstance(again, tuple) and again[1] == [] and again[0].users == {1, 2, 3, 4}
        assert await chats.add_members(cid, 9, [9], 4) is None  # not a member
        assert await chats.add_members("f" * 24, 1, [9], 4) is None  # no such chat

        race = await create_chat(worker, [1, 2])
        results = await asyncio.gather(*(add(race, [10 + i], 6) for i in range(8)))
        members = (await chats.get_chat(race)).users  # type: ignore[union-attr]
        joined = {10 + i for i, r in enumerate(results) if isinstance(r, tuple)}
        refused = {10 + i for i, r in enumerate(results) if isinstance(r, Full)}
        assert len(joined) == 4 and len(refused) == 4
        assert members == {1, 2} | joined
    finally:
        await database.close()


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_batches_a_producer_compressed_are_read(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings, codec: str
) -> None:
    """A producer outside the project may compress (librdkafka, the Java client, kcat),
    and the broker keeps its compression: without the codec aiokafka raises on the batch
    and every worker that owns the partition exits in turn."""
    cid = await create_chat(worker, [1, 2])
    records = [record(cid, 1, f"{codec} {i}") for i in range(20)]
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, compression_type=codec, linger_ms=50
    )
    await producer.start()
    try:
        sent = [await producer.send(worker.topic, r.to_bytes(), key=r.key()) for r in records]
        await asyncio.gather(*sent)  # one or a few compressed batches
    finally:
        await producer.stop()
    history = mongo[worker.mongo_db]["history"]
    await eventually(lambda: _count_is(history, cid, 20), what=f"20 {codec} records stored")
    stored = await history.find({"cid": ObjectId(cid)}, {"seq": 1, "text": 1}).to_list()
    assert [d["text"] for d in sorted(stored, key=lambda d: d["seq"])] == [r.text for r in records]


async def test_a_new_chat_is_pending_until_opened_and_then_a_chat_like_any_other(
    worker: WorkerProcess, mongo: Mongo, infra: LocalSettings
) -> None:
    """On the real store: a chat inserted pending is read as pending (by key and in its
    members' chats) until opened; opening passes FerretDB's version guard; a chat created
    through the worker's API is stored opened."""
    database = MongoDatabase(infra.mongo_url, worker.mongo_db, timeout=30.0)
    chats = MongoChats(database)
    try:
        chat = ChatView(new_id(), frozenset({41, 42}), int(time.time()), time.time())
        await chats.insert_chat(chat)
        assert (await chats.get_chat(chat.id)) == replace(chat, pending=True)
        assert [c.pending for c in await chats.chats_of(41) if c.id == chat.id] == [True]
        opened = time.time()
        await chats.open_chat(chat.id, opened)
        assert (await chats.get_chat(chat.id)) == replace(chat, opened_at=opened)
        assert [c.pending for c in await chats.chats_of(42) if c.id == chat.id] == [False]
        stored = await mongo[worker.mongo_db]["chats"].find_one({"_id": ObjectId(chat.id)})
        assert stored is not None and "pending" not in stored and stored["v"] == 1
    finally:
        await database.close()
    cid = await create_chat(worker, [41, 43])
    stored = await mongo[worker.mongo_db]["chats"].find_one({"_id": ObjectId(cid)})
    assert stored is not None and "pending" not in stored
