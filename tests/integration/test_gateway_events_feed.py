"""The gateway's reader of the events topic against real Kafka: from the end, every
partition, records that are not events skipped, and a restart that skips nothing."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.events import ChatRead
from contracts.ids import new_id
from gateway.adapters.events_feed import KafkaEventFeed
from gateway.services.ports import ChatEvent
from infra.local import LocalSettings
from tests.support.waiting import eventually


async def _topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def _reads(n: int, seq: int = 0) -> list[ChatRead]:
    return [ChatRead(cid=new_id(), uid=1, seq=seq + i) for i in range(n)]


async def test_the_feed_reads_from_the_end_skips_junk_and_resumes_where_it_stopped(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    bootstrap, topic = infra.kafka_bootstrap, unique("events")
    await _topic(bootstrap, topic)
    before = _reads(3)
    await _produce(bootstrap, topic, [(e.key(), e.to_bytes()) for e in before])

    got: list[ChatEvent] = []
    skipped: list[str] = []
    feed = KafkaEventFeed(bootstrap, topic)
    assert not feed.ready() and feed.status != "ok"
    await feed.start(lambda event, at: got.append(event), skipped.append)
    try:
        await eventually(feed.ready, what="feed positioned")
        during = _reads(6, seq=100)
        junk = [(b"x", b"not json"), (b"y", b'{"v": 1, "type": "chat.unknown"}')]
        await _produce(bootstrap, topic, [(e.key(), e.to_bytes()) for e in during] + junk)
        await eventually(lambda: len(got) == 6 and len(skipped) == 2, what="events read")
        assert sorted(e.seq for e in got if isinstance(e, ChatRead)) == list(range(100, 106))
        assert not set(before) & set(got)  # what came before the gateway is not replayed
    finally:
        await feed.stop()

    while_down = _reads(4, seq=200)  # published while the feed is stopped
    await _produce(bootstrap, topic, [(e.key(), e.to_bytes()) for e in while_down])
    await feed.start(lambda event, at: got.append(event), skipped.append)
    try:
        await eventually(lambda: len(got) == 10, what="the events of the pause")
        assert set(while_down) <= set(got)
    finally:
        await feed.stop()
