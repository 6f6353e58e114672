"""Scenario 7: malformed and hostile records produced straight to the topic, interleaved
with valid ones: every bad one lands in the DLQ with its reason, every valid one is
persisted once, and the stream keeps going."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from bson import ObjectId
from pymongo import AsyncMongoClient

from infra.local import LocalSettings
from tests.support.faults import SCALE, report
from tests.support.worker import WorkerProcess, produce

MEMBERS = [11, 12]


@pytest.fixture
async def worker(
    infra: LocalSettings, unique: Callable[[str], str]
) -> AsyncIterator[WorkerProcess]:
    proc = WorkerProcess.for_test(infra, unique, env={"HEARTBEAT_TTL": "3"}).start()
    try:
        yield await proc.wait_ready(90)
    finally:
        await proc.terminate()


def record(cid: str, **fields: Any) -> dict[str, Any]:
    base = {"v": 1, "id": str(ObjectId()), "cid": cid, "uid": MEMBERS[0], "text": "ok"}
    return {**base, "createdAt": int(time.time()), **fields}


def hostile(cid: str, i: int) -> list[tuple[bytes, str]]:
    """(value, expected x-dlq-kind) for every kind of bad record."""

    def dump(value: Any) -> bytes:
        return orjson.dumps(value)

    return [
        (b'{"v":1,"id":' + str(i).encode(), "invalid"),  # truncated JSON
        (b"\xff\xfe not utf-8 " + bytes([i]), "invalid"),
        (b"", "invalid"),
        (dump([1, 2, i]), "invalid"),
        (dump(record(cid, uid="eleven")), "invalid"),  # wrong type
        (dump(record(cid, id=f"not-an-id-{i}")), "invalid"),
        (dump(record(cid, text="x" * 100_000 + str(i))), "invalid"),  # huge text
        (dump(record(cid, text="")), "invalid"),
        (dump(record(cid, v=2)), "invalid"),  # unknown schema version
        (dump({k: v for k, v in record(cid).items() if k != "uid"}), "invalid"),
        (dump(record(str(ObjectId()))), "unknown_chat"),
        (dump(record(cid, uid=999_999)), "not_member"),
    ]


async def dead_letters(
    bootstrap: str, topic: str, wanted: set[bytes], within: float
) -> dict[bytes, dict[str, str]]:
    """Read the DLQ from the start until every wanted value is there (bounded)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: dict[bytes, dict[str, str]] = {}
    try:
        deadline = time.monotonic() + within
        while not wanted <= set(found) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    headers = {k: v.decode(errors="replace") for k, v in r.headers}
                    found[r.value or b""] = headers
    finally:
        await consumer.stop()
    return found


async def test_hostile_records_go_to_the_dlq_and_the_stream_goes_on(
    worker: WorkerProcess, infra: LocalSettings
) -> None:
    async with aiohttp.ClientSession(headers=worker.headers) as http:
        async with http.post(f"{worker.base_url}/chats", json={"users": MEMBERS}) as resp:
            assert resp.status == 201, await resp.text()
            cid = (await resp.json())["id"]

    rounds = int(4 * SCALE)
    valid: list[dict[str, Any]] = []
    bad: dict[bytes, str] = {}
    batch: list[tuple[bytes | None, bytes]] = []
    for i in range(rounds):
        for value, kind in hostile(cid, i):
            good = record(cid, text=f"valid-{len(valid)}")
            valid.append(good)
            bad[value] = kind
            batch += [(cid.encode(), orjson.dumps(good)), (cid.encode(), value)]
    batch.append((b"\x00garbage key", b"}{"))  # a hostile key as well
    bad[b"}{"] = "invalid"
    await produce(infra.kafka_bootstrap, worker.topic, batch)

    letters = await dead_letters(infra.kafka_bootstrap, worker.dlq_topic, set(bad), 60)
    # The stream goes on: one more valid record after the whole burst is persisted too.
    last = record(cid, text="after the burst")
    await produce(infra.kafka_bootstrap, worker.topic, [(cid.encode(), orjson.dumps(last))])
    valid.append(last)

    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongo_url, timeoutMS=10000)
    try:
        messages = mongo[worker.mongo_db]["messages"]
        deadline = time.monotonic() + 60
        while True:
            docs = await messages.find({}, {"_id": 1, "text": 1}).to_list(None)
            if len(docs) >= len(valid) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await mongo.close()

    ids = Counter(str(d["_id"]) for d in docs)
    persisted = sum(1 for r in valid if ids[r["id"]] == 1)
    kinds = Counter(h.get("x-dlq-kind") for v, h in letters.items() if v in bad)
    report(
        f"faults 7-hostile-records: sent={len(batch) + 1} valid={len(valid)} bad={len(bad)} "
        f"errors={dict(sorted(kinds.items()))} persisted={persisted}/{len(valid)} "
        f"duplicates={sum(n - 1 for n in ids.values())} dlq={len(set(bad) & set(letters))} "
        f"stray={len(docs) - persisted} max_read_gap_ms=n/a"
    )

    assert persisted == len(valid) and len(docs) == len(valid), (persisted, len(docs))
    missing = [v[:80] for v in bad if v not in letters]
    assert missing == [], missing
    for value, kind in bad.items():
        headers = letters[value]
        assert headers.get("x-dlq-kind") == kind, (value[:80], headers)
        assert headers.get("x-dlq-reason"), (value[:80], headers)
    assert not any(orjson.dumps(r) in letters for r in valid), "a valid record was dead-lettered"
    assert worker.returncode is None and await worker.consul_status() == "passing"
