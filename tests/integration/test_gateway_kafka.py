"""The gateway's producer against real Kafka: acked records, and 5031 when Kafka is gone.

A send is bounded by the bus's send timeout (the figure is in the fault suite's report);
here a failing send only has to end with 5031 instead of hanging (a generous bound)."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.errors import ErrorCode
from contracts.ids import new_id
from contracts.records import MessageRecord, decode_record
from gateway.adapters.kafka_bus import KafkaBus
from gateway.errors import GatewayError
from infra.local import LocalSettings, Stack
from infra.processes.private import free_port
from tests.support.waiting import WITHIN, eventually

SEND_TIMEOUT = 2.0


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()


def _record(cid: str | None = None, text: str = "hello") -> MessageRecord:
    return MessageRecord(
        v=1, id=new_id(), cid=cid or new_id(), uid=1, text=text, createdAt=time.time()
    )


async def _expect_5031(bus: KafkaBus) -> GatewayError:
    """Publish one record: it must fail with 5031, and not hang."""
    with pytest.raises(GatewayError) as caught:
        async with asyncio.timeout(WITHIN):
            await bus.publish(_record())
    assert caught.value.code is ErrorCode.BUS_UNAVAILABLE
    return caught.value


async def test_published_records_are_acked_keyed_by_chat(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("gw-bus")
    await _create_topic(infra.kafka_bootstrap, topic)
    bus = KafkaBus(infra.kafka_bootstrap, topic, SEND_TIMEOUT)
    await bus.start()
    try:
        await eventually(bus.ready, what="the new topic's metadata")  # before the 2 s sends
        cid = new_id()
        sent = [_record(cid, f"m{i}") for i in range(5)]
        for record in sent:
            await bus.publish(record)
        assert await bus.ready()
    finally:
        await bus.stop()
        await bus.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        got: list[tuple[bytes | None, bytes | None]] = []
        while len(got) < len(sent):
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, "records did not arrive"
            got.extend((r.key, r.value) for rs in batch.values() for r in rs)
    finally:
        await consumer.stop()
    assert {key for key, _ in got} == {cid.encode()}
    assert [decode_record(value) for _, value in got] == sent  # one key: one partition, in order


async def test_unknown_topic_is_5031_and_not_ready(infra: LocalSettings) -> None:
    bus = KafkaBus(infra.kafka_bootstrap, "gw-missing-topic-never-created", SEND_TIMEOUT)
    await bus.start()
    try:
        await _expect_5031(bus)
        assert not await bus.ready()
    finally:
        await bus.stop()


async def test_private_broker_late_start_then_killed(tmp_path: Path) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    bus = KafkaBus(bootstrap, "gw-private", SEND_TIMEOUT)
    await bus.start()  # Kafka is not there yet: start returns, sends fail fast
    stack = Stack(
        LocalSettings.from_env(
            {
                "LOCAL_RUN_DIR": str(tmp_path),
                "LOCAL_KAFKA_PORT": str(port),
                "LOCAL_KAFKA_CONTROLLER_PORT": str(free_port()),
            }
        )
    )
    try:
        # Not connected: refused at once, without trying to send.
        assert "not connected" in (await _expect_5031(bus)).message
        await asyncio.to_thread(stack.up, ["kafka"])
        await _create_topic(bootstrap, "gw-private")
        await eventually(bus.ready, what="the producer connected to the late broker")
        await bus.publish(_record())
        stack.kill("kafka")
        for _ in range(3):
            await _expect_5031(bus)
        assert not await bus.ready()
        # Stopping drops the three unsent batches; nothing of theirs is left for asyncio
        # to report as "Future exception was never retrieved" when it is collected.
        unretrieved: list[str] = []
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()

        def note(_: object, context: dict[str, object]) -> None:
            unretrieved.append(f"{context['message']}: {context.get('exception')!r}")

        loop.set_exception_handler(note)
        try:
            await bus.stop()
            gc.collect()
        finally:
            loop.set_exception_handler(previous)
        assert unretrieved == []
    finally:
        stack.kill("kafka")
        await bus.stop()


async def test_a_record_delivered_after_its_timeout_is_reported(tmp_path: Path) -> None:
    """A broker that stops answering (SIGSTOP: a long GC pause, a frozen VM) past the send
    timeout: the post is answered 5031, aiokafka keeps the record and delivers it once
    the broker answers again, and the bus says so (the gateway then answers a retry with
    the same Idempotency-Key from memory, tests/unit/test_gateway_posts.py). Delivered
    once."""
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    stack = Stack(
        LocalSettings.from_env(
            {
                "LOCAL_RUN_DIR": str(tmp_path),
                "LOCAL_KAFKA_PORT": str(port),
                "LOCAL_KAFKA_CONTROLLER_PORT": str(free_port()),
            }
        )
    )
    bus = KafkaBus(bootstrap, "gw-late", 1.0)
    try:
        await asyncio.to_thread(stack.up, ["kafka"])
        await _create_topic(bootstrap, "gw-late")
        await bus.start()
        await eventually(bus.ready, what="the producer connected")
        await bus.publish(_record())  # connected to the partition's leader
        pid = stack.process("kafka").pid()
        assert pid is not None
        delivered = asyncio.Event()
        late = _record(text="late")
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(GatewayError) as timed_out:
                await bus.publish(late, delivered.set)
            assert timed_out.value.code is ErrorCode.BUS_UNAVAILABLE
            assert not delivered.is_set()
        finally:
            os.kill(pid, signal.SIGCONT)
        await eventually(delivered.is_set, what="the record delivered after all")
        consumer = AIOKafkaConsumer(
            "gw-late", bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            texts: list[str] = []
            while len(texts) < 2:
                batch = await consumer.getmany(timeout_ms=10_000)
                assert batch, "records did not arrive"
                texts += [decode_record(r.value).text for rs in batch.values() for r in rs]
        finally:
            await consumer.stop()
        assert sorted(texts) == ["hello", "late"]
    finally:
        await bus.stop()
        stack.kill("kafka")
