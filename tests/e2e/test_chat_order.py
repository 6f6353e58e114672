"""A chat's order is its partition's order, whoever produces into it (issue 13).

Real gateways, workers, Kafka, FerretDB and MariaDB: posts through two gateways and
records from a librdkafka producer on its default settings end up in one chat with seq
1..N, each producer's own order kept.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator, Callable

import aiohttp
import orjson
import pytest
from bson import ObjectId

from dialogue_worker.adapters.topics import partitioner
from infra.processes.gateway import GatewayProcess
from tests.support import librdkafka
from tests.support.api_user import User
from tests.support.faults import Platform
from tests.support.waiting import eventually

PER_PRODUCER = 40


@pytest.fixture
async def users(
    platform: Platform, unique: Callable[[str], str]
) -> AsyncIterator[tuple[User, User]]:
    async with aiohttp.ClientSession() as http:
        url = platform.gateway.url
        yield (
            await User.sign_up(http, url, "o" + unique("")[-12:].replace("-", "")),
            await User.sign_up(http, url, "o" + unique("")[-12:].replace("-", "")),
        )


def librdkafka_partition(key: bytes, partitions: int) -> int:
    """Where librdkafka's default partitioner (consistent_random: CRC32) puts a key."""
    return zlib.crc32(key) % partitions


async def test_librdkafka_on_default_settings_and_the_gateway_share_one_sequence(
    platform: Platform, users: tuple[User, User]
) -> None:
    alice, bob = users
    n = platform.workers[0].partitions
    # A chat whose key librdkafka puts on another partition than Kafka's default does.
    for _ in range(20):
        chat = await alice.call("POST", "/v1/chats", json={"users": [alice.id, bob.id]})
        key = chat["id"].encode()
        if librdkafka_partition(key, n) != partitioner(n)(chat["id"]):
            break
    else:
        pytest.fail("no chat id in 20 where the two partitioners differ")
    cid = chat["id"]

    def foreign(i: int) -> bytes:
        record = {
            "v": 1,
            "id": str(ObjectId()),
            "cid": cid,
            "uid": bob.id,
            "text": f"r{i}",
            "createdAt": int(time.time()),
        }
        return orjson.dumps(record)

    async def through_the_gateway() -> None:
        for i in range(PER_PRODUCER):
            await alice.call("POST", f"/v1/chats/{cid}/messages", json={"txt": f"g{i}"})

    records = [(cid.encode(), foreign(i)) for i in range(PER_PRODUCER)]
    bootstrap, topic = platform.infra.kafka_bootstrap, platform.workers[0].topic
    await asyncio.gather(  # librdkafka on its defaults: no config
        through_the_gateway(), asyncio.to_thread(librdkafka.produce, bootstrap, topic, records)
    )

    history = await eventually(
        lambda: alice.history(cid),
        lambda found: len(found) == 2 * PER_PRODUCER,
        what="both producers' messages stored",
    )
    assert [m["seq"] for m in history] == list(range(1, 2 * PER_PRODUCER + 1))
    texts = [m["text"] for m in history]
    assert [t for t in texts if t[0] == "g"] == [f"g{i}" for i in range(PER_PRODUCER)]
    assert [t for t in texts if t[0] == "r"] == [f"r{i}" for i in range(PER_PRODUCER)]
    forwarded = sum(
        [await w.metric("dialogue_worker_records_forwarded_total") for w in platform.workers]
    )
    assert forwarded >= PER_PRODUCER  # each foreign record went through its chat's partition


async def test_two_gateways_posting_into_one_chat_are_listed_in_kafka_order(
    platform: Platform, users: tuple[User, User]
) -> None:
    """The old system ordered by ObjectId, so two gateways' posts within one second came
    back ordered by process part; by seq they come back as Kafka took them."""
    alice, bob = users
    second = GatewayProcess(platform.gateway.env).start()
    try:
        await second.wait_ready(90)
        cid = (await alice.call("POST", "/v1/chats", json={"users": [alice.id, bob.id]}))["id"]
        posted = []
        for i in range(20):  # one after the other: each 202 before the next post
            via = (platform.gateway.url, second.url)[i % 2]
            message = await alice.call(
                "POST", f"/v1/chats/{cid}/messages", url=via, json={"txt": f"m{i}"}
            )
            posted.append(message["id"])
    finally:
        await second.stop()
    history = await eventually(
        lambda: bob.history(cid), lambda found: len(found) == 20, what="the 20 messages"
    )
    assert [m["id"] for m in history] == posted
    assert [m["seq"] for m in history] == list(range(1, 21))
