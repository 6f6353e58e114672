"""WorkerHealth, ChatBook and the sharding decision, with fakes and a manual clock."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

import pymongo
import pytest
from bson.int64 import Int64
from pymongo.errors import OperationFailure

from dialogue_worker.adapters.mongo import MongoDatabase
from dialogue_worker.adapters.registration import ConsulRegistration
from dialogue_worker.adapters.sharding import ensure_sharding, same_key
from dialogue_worker.errors import StorageUnavailable, StoreMisconfigured
from dialogue_worker.services.chat_book import ChatBook
from dialogue_worker.services.health import PartitionState, Status, WorkerHealth
from dialogue_worker.settings import WorkerSettings
from discovery import HealthReport
from platform_common.local import LOCAL_ENTRYPOINT_TOKEN as LOCAL_TOKEN
from tests.support.absent import MONGO_NOT_THERE
from tests.support.worker_fakes import MemoryStore


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class Mongo:
    up = True

    async def ping(self) -> None:
        if not self.up:
            raise StorageUnavailable("connection refused")


class SlowMongo:
    """A ping that answers when told to, and records whether it was cancelled."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.answer = asyncio.Event()
        self.cancelled = False

    async def ping(self) -> None:
        self.calls += 1
        self.started.set()
        try:
            await self.answer.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_a_check_cancelled_from_outside_leaves_its_ping_running_and_shared() -> None:
    mongo = SlowMongo()
    health = WorkerHealth(mongo.ping, dict, stall_after=30, clock=Clock())
    first = asyncio.create_task(health.check())
    await mongo.started.wait()
    second = asyncio.create_task(health.check())  # joins the ping in flight
    first.cancel()  # as the registry's one-second heartbeat bound does
    with pytest.raises(asyncio.CancelledError):
        await first
    assert not mongo.cancelled
    mongo.answer.set()
    assert (await second).status is Status.PASSING
    assert (mongo.calls, mongo.cancelled) == (1, False)


async def test_health_critical_warning_passing() -> None:
    clock, mongo = Clock(), Mongo()
    partitions: dict[tuple[str, int], PartitionState] = {("t", 0): PartitionState(0, 10)}
    health = WorkerHealth(mongo.ping, lambda: partitions, stall_after=30, clock=clock)
    assert (await health.check()).status is Status.PASSING

    mongo.up = False
    down = await health.check()
    assert down.status is Status.CRITICAL and "connection refused" in (down.reason or "")

    mongo.up = True
    partitions[("t", 0)] = PartitionState(12, 10)  # records arrive at t=0
    assert (await health.check()).status is Status.PASSING
    clock.now = 31.0
    stalled = await health.check()
    assert stalled.status is Status.WARNING
    assert stalled.reason == "partition stuck: t/0 at offset 10 for 31s (lag 12)"
    assert [s.offset for s in health.stuck()] == [10]

    partitions[("t", 0)] = PartitionState(2, 20)  # it moved
    assert (await health.check()).status is Status.PASSING
    health.failing("write failing: boom")
    assert (await health.check()).reason == "write failing: boom"
    health.progressed()
    assert (await health.check()).status is Status.PASSING


async def test_a_batch_waiting_for_kafka_leaves_the_worker_serving_reads() -> None:
    """Reads need MongoDB only: a Kafka outage (events, forwards, dead letters) must not
    take every worker out of the gateways' read set, nor call its waiting partitions
    stuck; MongoDB down while it waits still does."""
    clock, mongo = Clock(), Mongo()
    partitions: dict[tuple[str, int], PartitionState] = {("t", 0): PartitionState(12, 10)}
    health = WorkerHealth(mongo.ping, lambda: partitions, stall_after=30, clock=clock)
    await health.check()
    health.failing("publish failing: KafkaConnectionError", reads_fail=False)
    clock.now = 100.0  # far past stall_after: the partition waits for Kafka
    waiting = await health.check()
    assert waiting.status is Status.PASSING
    assert waiting.reason == "reads served; writes wait: publish failing: KafkaConnectionError"
    mongo.up = False
    assert (await health.check()).status is Status.CRITICAL
    mongo.up = True
    health.failing("write failing: connection refused")  # the store's: reads fail too
    assert (await health.check()).status is Status.CRITICAL


async def test_the_consul_check_of_a_worker_waiting_for_kafka_passes_with_the_reason() -> None:
    health = WorkerHealth(Mongo().ping, dict, stall_after=30, clock=Clock())
    registration = ConsulRegistration(WorkerSettings(dialogue_env="local"), "w-1", health)
    assert await registration.probe() == HealthReport.passing()
    health.failing("publish failing: KafkaConnectionError", reads_fail=False)
    report = await registration.probe()
    assert report == HealthReport.passing(
        "reads served; writes wait: publish failing: KafkaConnectionError"
    )


async def test_only_the_partition_that_does_not_move_is_stuck() -> None:
    clock, mongo = Clock(), Mongo()
    partitions = {("t", 0): PartitionState(5, 100), ("t", 1): PartitionState(5, 7)}
    health = WorkerHealth(mongo.ping, lambda: partitions, stall_after=30, clock=clock)
    for step in range(1, 8):  # partition 1 advances every 10 s, partition 0 never
        clock.now = 10.0 * step
        partitions[("t", 1)] = PartitionState(5, 7 + step)
        health.stuck()
    assert [(s.partition, s.offset, s.seconds) for s in health.stuck()] == [(0, 100, 60.0)]


async def test_an_idle_partition_is_not_stuck_when_records_arrive() -> None:
    clock, mongo = Clock(), Mongo()
    partitions = {("t", 0): PartitionState(0, 100)}
    health = WorkerHealth(mongo.ping, lambda: partitions, stall_after=30, clock=clock)
    health.stuck()
    clock.now = 1000.0  # idle for long at the same position, then a record arrives
    partitions[("t", 0)] = PartitionState(1, 100)
    assert health.stuck() == []
    clock.now = 1031.0
    assert [s.seconds for s in health.stuck()] == [31.0]


async def test_recent_reuses_a_fresh_check() -> None:
    clock, mongo = Clock(), Mongo()
    health = WorkerHealth(mongo.ping, dict, stall_after=30, clock=clock)
    await health.check()
    mongo.up = False
    assert (await health.recent(max_age=1.0)).status is Status.PASSING
    clock.now = 2.0
    assert (await health.recent(max_age=1.0)).status is Status.CRITICAL


async def test_the_chat_book_trusts_members_for_a_while_and_only_to_accept() -> None:
    clock, store = Clock(), MemoryStore()
    store.add_chat("a" * 24, {1})
    book = ChatBook(store, 5.0, clock)
    assert await book.members({"a" * 24: {1}, "b" * 24: {1}}) == {"a" * 24: frozenset({1})}
    assert await book.members({"a" * 24: {1}}) and store.calls.count("chats_for_writing") == 1
    assert await book.members({"a" * 24: {2}}) == {"a" * 24: frozenset({1})}  # looked again
    clock.now = 5.1
    await book.members({"a" * 24: {1}})
    assert store.calls.count("chats_for_writing") == 3


class Commands:
    """A mongos: answers ok, or, for a collection in `sharded` (namespace -> key), what
    MongoDB answers when it is sharded already (code 23, whatever key was asked)."""

    def __init__(self, sharded: dict[str, dict[str, Any]] | None = None) -> None:
        self.issued: list[tuple[Any, ...]] = []
        self.sharded = sharded or {}

    async def __call__(self, *args: Any, **kwargs: Any) -> Mapping[str, Any]:
        self.issued.append((*args, kwargs))
        if args[0] == "shardCollection" and args[1] in self.sharded:
            raise OperationFailure("sharding already enabled for collection", code=23)
        return {"ok": 1}

    async def key_of(self, namespace: str) -> Mapping[str, Any] | None:
        return self.sharded.get(namespace)


async def test_sharding_only_behind_mongos() -> None:
    plain = Commands()
    assert await ensure_sharding(plain, "db", {"isWritablePrimary": True}, plain.key_of) is False
    assert plain.issued == []

    mongos = Commands()
    assert await ensure_sharding(mongos, "db", {"msg": "isdbgrid"}, mongos.key_of) is True
    assert mongos.issued == [
        ("enableSharding", "db", {}),
        ("shardCollection", "db.history", {"key": {"page": "hashed"}}),
        ("shardCollection", "db.message_ids", {"key": {"_id": "hashed"}}),
        ("shardCollection", "db.chats", {"key": {"_id": "hashed"}}),
        ("shardCollection", "db.reads", {"key": {"u": "hashed"}}),
    ]


async def test_a_collection_sharded_already_must_be_so_on_its_key() -> None:
    """MongoDB answers "already sharded" also for another key: that passed as done."""
    again = Commands({"db.history": {"page": "hashed"}, "db.chats": {"_id": "hashed"}})
    assert await ensure_sharding(again, "db", {"msg": "isdbgrid"}, again.key_of) is True
    other = Commands({"db.history": {"cid": "hashed"}})
    with pytest.raises(StoreMisconfigured, match=r"db.history is sharded on \{'cid': 'hashed'\}"):
        await ensure_sharding(other, "db", {"msg": "isdbgrid"}, other.key_of)


def test_shard_keys_compare_in_order_and_numbers_by_value() -> None:
    assert same_key({"page": "hashed"}, {"page": "hashed"})
    assert same_key({"u": 1.0, "cid": Int64(1)}, {"u": 1, "cid": 1})
    assert not same_key({"cid": 1, "u": 1}, {"u": 1, "cid": 1})  # a compound key's order
    assert not same_key({"page": 1}, {"page": "hashed"})
    assert not same_key({"page": True}, {"page": 1})
    assert not same_key({"page": "hashed", "u": 1}, {"page": "hashed"})


def test_settings_refuse_the_default_token_outside_local_mode() -> None:
    with pytest.raises(ValueError, match="ENTRYPOINT_TOKEN"):
        WorkerSettings(dialogue_env="production", entrypoint_token=LOCAL_TOKEN)
    local = WorkerSettings(dialogue_env="local")
    assert local.entrypoint_token.get_secret_value() == LOCAL_TOKEN
    assert local.dlq_topic == "dialogue.messages.dlq" and local.advertise_host == "127.0.0.1"
    with pytest.raises(ValueError, match="ENTRYPOINT_TOKEN is shorter than 32 bytes"):
        WorkerSettings(dialogue_env="production", entrypoint_token="s3cret-token-value")
    prod = WorkerSettings(dialogue_env="production", entrypoint_token="s3cret-token-value" * 2)
    assert prod.worker_port == 8100 and prod.topic_partitions == 12


async def test_the_shared_ping_keeps_its_own_time_whoever_starts_it() -> None:
    """A check started inside a caller's pymongo.timeout (a read's X-Timeout-Ms: `/ping`
    through the gateway) leaves the shared ping its own time: the caller's hurry is not
    reported, to it and to every check sharing the ping, as MongoDB unreachable."""
    database = MongoDatabase(MONGO_NOT_THERE, "health", timeout=5.0)
    health = WorkerHealth(lambda: database.ping(1.0), dict, stall_after=30, clock=Clock())
    try:
        with pymongo.timeout(0.05):
            state = await health.check()
    finally:
        await database.close()
    assert state.status is Status.CRITICAL and state.reason is not None
    found = re.search(r"Timeout: ([0-9.]+)s", state.reason)
    assert found is not None, state.reason
    assert 0.5 < float(found.group(1)) <= 1.0  # the ping's 1 s, not the caller's 0.05 s
