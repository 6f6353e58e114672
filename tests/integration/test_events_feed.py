"""The gateway's reader of the events topic against real Kafka: from the end, every
partition, records that are not events skipped, and a restart that skips nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic

from contracts.events import ChatEvent, ChatRead
from contracts.ids import new_id
from infra.local import LocalSettings
from platform_common.events_feed import KafkaEventFeed
from tests.support.waiting import eventually


async def _topic(bootstrap: str, name: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, replication_factor=1)])
    finally:
        await admin.close()


async def _grow(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_partitions({name: NewPartitions(total_count=partitions)})
    finally:
        await admin.close()


async def _produce_to(bootstrap: str, topic: str, partition: int, events: list[ChatRead]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic, event.to_bytes(), key=event.key(), partition=partition
            )
    finally:
        await producer.stop()


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


async def test_partitions_added_while_the_feed_runs_skip_nothing(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    """aiokafka resets every partition of a group-less consumer to its end when the
    partition set changes: what was published meanwhile on the old partitions, and
    on the new ones before the feed saw them, was skipped."""
    bootstrap, topic = infra.kafka_bootstrap, unique("events")
    await _topic(bootstrap, topic, partitions=1)
    got: list[ChatEvent] = []
    feed = KafkaEventFeed(bootstrap, topic, metadata_every=1.0)
    await feed.start(lambda event, at: got.append(event), lambda reason: None)
    try:
        await eventually(feed.ready, what="feed positioned")
        first = _reads(2, seq=10)
        await _produce_to(bootstrap, topic, 0, first)
        await eventually(lambda: len(got) == 2, what="the first events")
        await _grow(bootstrap, topic, 3)
        later = _reads(3, seq=20)
        for partition, event in enumerate(later):  # before the feed knows of 1 and 2
            await _produce_to(bootstrap, topic, partition, [event])
        await eventually(lambda: len(got) >= 5, what="the events around the change", within=60)
        more = _reads(3, seq=30)
        for partition, event in enumerate(more):
            await _produce_to(bootstrap, topic, partition, [event])
        await eventually(lambda: len(got) >= 8, what="the events after it", within=60)
        assert sorted({e.seq for e in got if isinstance(e, ChatRead)}) == [
            10,
            11,
            20,
            21,
            22,
            30,
            31,
            32,
        ]
    finally:
        await feed.stop()


async def test_caught_up_returns_once_every_event_published_before_it_is_handed_over(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    bootstrap, topic = infra.kafka_bootstrap, unique("events")
    await _topic(bootstrap, topic)
    got: list[ChatEvent] = []
    feed = KafkaEventFeed(bootstrap, topic, barrier=True)
    plain = KafkaEventFeed(bootstrap, topic)
    await feed.start(lambda event, at: got.append(event), lambda reason: None)
    await plain.start(lambda event, at: None, lambda reason: None)
    try:
        await eventually(lambda: feed.ready() and plain.ready(), what="feeds positioned")
        assert await feed.caught_up(5.0)  # nothing published: at the ends already
        for round_ in range(5):
            events = _reads(7, seq=round_ * 10)
            await _produce(bootstrap, topic, [(e.key(), e.to_bytes()) for e in events])
            assert await feed.caught_up(5.0)
            # (keys on several partitions: in order within each, not across them)
            assert sorted(e.to_bytes() for e in got[-7:]) == sorted(e.to_bytes() for e in events)
        assert len(got) == 35
        # Lists at once share their requests for the ends, and each still waits for what
        # was published before it asked.
        events = _reads(7, seq=100)
        await _produce(bootstrap, topic, [(e.key(), e.to_bytes()) for e in events])
        assert await asyncio.gather(*(feed.caught_up(5.0) for _ in range(20))) == [True] * 20
        assert sorted(e.to_bytes() for e in got[-7:]) == sorted(e.to_bytes() for e in events)
        assert not await plain.caught_up(5.0)  # no barrier asked for: it cannot tell
    finally:
        await feed.stop()
        await plain.stop()
    assert not await feed.caught_up(5.0)  # stopped: it cannot tell


async def test_caught_up_steps_over_transaction_markers(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    """A transaction's commit marker takes an offset that no record is handed over for:
    judged by the last record's offset, the feed stayed one below the end, and every
    caught_up waited out its time (found in review)."""
    bootstrap, topic = infra.kafka_bootstrap, unique("events")
    await _topic(bootstrap, topic, partitions=1)
    got: list[ChatEvent] = []
    feed = KafkaEventFeed(bootstrap, topic, barrier=True)
    await feed.start(lambda event, at: got.append(event), lambda reason: None)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=unique("events-tx"), acks="all"
    )
    await producer.start()
    try:
        await eventually(feed.ready, what="feed positioned")
        events = _reads(3)
        async with producer.transaction():
            for event in events:
                await producer.send_and_wait(topic, event.to_bytes(), key=event.key())
        # The commit marker is written after the commit is answered: wait until it is in.
        ends = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await ends.start()
        try:
            partition = TopicPartition(topic, 0)
            await eventually(
                lambda: ends.end_offsets([partition]),
                lambda found: found[partition] == len(events) + 1,
                what="the commit marker written",
            )
        finally:
            await ends.stop()
        assert await feed.caught_up(10.0)
        assert got == events
    finally:
        await producer.stop()
        await feed.stop()
