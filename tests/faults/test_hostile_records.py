"""Scenario 7: malformed and hostile records produced straight to the topic, interleaved
with valid ones on one partition: every bad one lands in the DLQ with its reason, every
valid one is persisted once and readable, and the stream keeps going.

The burst of edge records (every field at and past its bounds, tests/support/hostile.py)
is produced by librdkafka (confluent-kafka), as a producer outside this project would."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from bson import ObjectId

from contracts.records import UID_MAX, decode_record
from infra.local import LocalSettings
from infra.processes.worker import WorkerProcess, produce
from tests.support import librdkafka
from tests.support.faults import SCALE, report
from tests.support.hostile import EDGE_INTS, LIKE_JAVA, dead_letters, edge_values, expected_kind
from tests.support.waiting import eventually

#: Members include users at the edges of the id range, so records at those edges are kept.
MEMBERS = [11, 12, *(n for n in EDGE_INTS if 1 <= n <= UID_MAX and n not in (11, 12))]


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


async def readable(worker: WorkerProcess, cid: str) -> list[dict[str, Any]]:
    """Every message of the chat, paged through the worker's read API."""
    found: list[dict[str, Any]] = []
    params = {"uid": str(MEMBERS[0]), "cid": cid, "limit": "200"}
    async with aiohttp.ClientSession(headers=worker.headers) as http:
        while True:
            async with http.get(f"{worker.base_url}/messages", params=params) as resp:
                assert resp.status == 200, await resp.text()
                page = await resp.json()
            found += page["data"]
            if not page["nextCursor"]:
                return found
            params["before"] = page["nextCursor"]


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

    # Edge records from librdkafka, each right after a valid one, on the chat's partition.
    edge_batch: list[tuple[bytes, bytes]] = []
    kept_edges: list[bytes] = []
    for value in edge_values(cid, MEMBERS[0]):
        good = record(cid, text=f"valid-{len(valid)}")
        valid.append(good)
        edge_batch += [(cid.encode(), orjson.dumps(good)), (cid.encode(), value)]
        kind = expected_kind(value, set(MEMBERS))
        if kind is None:
            kept_edges.append(value)
        else:
            bad[value] = kind
    await asyncio.to_thread(
        librdkafka.produce, infra.kafka_bootstrap, worker.topic, edge_batch, LIKE_JAVA
    )

    letters = await dead_letters(infra.kafka_bootstrap, worker.dlq_topic, set(bad), 60)
    # The stream goes on: one more valid record after the whole burst is persisted too.
    last = record(cid, text="after the burst")
    await produce(infra.kafka_bootstrap, worker.topic, [(cid.encode(), orjson.dumps(last))])
    valid.append(last)
    wanted = {r["id"] for r in valid} | {decode_record(v).id for v in kept_edges}

    messages = await eventually(
        lambda: readable(worker, cid), lambda found: len(found) >= len(wanted), what="readable"
    )
    ids = Counter(m["id"] for m in messages)
    persisted = sum(1 for i in wanted if ids[i] == 1)
    kinds = Counter(h.get("x-dlq-kind") for v, h in letters.items() if v in bad)
    report(
        f"faults 7-hostile-records: sent={len(batch) + len(edge_batch) + 1} "
        f"valid={len(wanted)} bad={len(bad)} errors={dict(sorted(kinds.items()))} "
        f"persisted={persisted}/{len(wanted)} duplicates={sum(n - 1 for n in ids.values())} "
        f"dlq={len(set(bad) & set(letters))} stray={len(messages) - persisted} max_read_gap_ms=n/a"
    )

    assert persisted == len(wanted) and len(messages) == len(wanted), (persisted, len(messages))
    by_id = {m["id"]: m for m in messages}
    for value in kept_edges:  # stored sanely: what was sent is what is read
        sent = decode_record(value)
        assert by_id[sent.id]["text"] == sent.text and by_id[sent.id]["uid"] == sent.uid
    missing = [v[:80] for v in bad if v not in letters]
    assert missing == [], missing
    for value, kind in bad.items():
        headers = letters[value]
        assert headers.get("x-dlq-kind") == kind, (value[:80], headers)
        assert headers.get("x-dlq-reason"), (value[:80], headers)
    assert not any(orjson.dumps(r) in letters for r in valid), "a valid record was dead-lettered"
    assert worker.returncode is None
    # TTL 3 s: one heartbeat may be late on a loaded machine; it must be passing again.
    await eventually(worker.consul_status, lambda status: status == "passing")


async def test_a_decompression_bomb_is_dead_lettered_and_the_stream_goes_on(
    worker: WorkerProcess, infra: LocalSettings
) -> None:
    """Found in review: a compressed batch is decompressed whole before its first record
    is read, with no bound (a 32 KB zstd batch became 1 GB). One of 80 MiB of zeros (a few
    KB on the wire, within the broker's 1 MiB) is read as unreadable records past
    BATCH_MAX_BYTES (64 MiB): dead-lettered with the reason, and the next record stored."""
    async with aiohttp.ClientSession(headers=worker.headers) as http:
        async with http.post(f"{worker.base_url}/chats", json={"users": MEMBERS}) as resp:
            assert resp.status == 201, await resp.text()
            cid = (await resp.json())["id"]
    bomb = b"\0" * (80 * 1024 * 1024)
    zstd = {**LIKE_JAVA, "compression.type": "zstd", "message.max.bytes": 200 * 1024 * 1024}
    await asyncio.to_thread(
        librdkafka.produce, infra.kafka_bootstrap, worker.topic, [(cid.encode(), bomb)], zstd
    )
    del bomb
    after = record(cid, text="after the bomb")
    await produce(infra.kafka_bootstrap, worker.topic, [(cid.encode(), orjson.dumps(after))])

    letters = await dead_letters(infra.kafka_bootstrap, worker.dlq_topic, {b""}, 60)
    assert b"" in letters, letters
    headers = letters[b""]
    assert headers.get("x-dlq-kind") == "invalid", headers
    assert "unreadable" in headers.get("x-dlq-reason", ""), headers
    messages = await eventually(
        lambda: readable(worker, cid), lambda found: len(found) >= 1, what="the next record"
    )
    assert [m["id"] for m in messages] == [after["id"]]
    report(f"faults 7-decompression-bomb: dlq_reason={headers.get('x-dlq-reason', '')[:120]!r}")
    assert worker.returncode is None
