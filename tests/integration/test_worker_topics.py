"""Topic creation at worker start: the topics are served, with leaders, before it returns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from dialogue_worker.adapters.topics import Durability, TopicSetupFailed, ensure_topics
from infra.local import LocalSettings
from tests.support.waiting import WITHIN


async def test_new_topics_are_served_with_every_partition_when_ensure_returns(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    topic = unique("topics")
    topics = [topic, f"{topic}.dlq"]

    found = await ensure_topics(infra.kafka_bootstrap, topics, partitions=5)

    assert found.partitions == {topic: 5, f"{topic}.dlq": 5}
    assert found.wanted == Durability(1, 1) and found.weaker == {}  # one broker: one copy
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    assert [(t["error_code"], len(t["partitions"])) for t in described] == [(0, 5), (0, 5)]
    assert all(p["leader"] >= 0 for t in described for p in t["partitions"])
    # Idempotent: a second start finds them and changes nothing.
    assert await ensure_topics(infra.kafka_bootstrap, topics, 5) == found


async def test_more_in_sync_replicas_than_the_cluster_gives_creates_nothing(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    """TOPIC_MIN_INSYNC=2 with the replication left to a one-broker cluster: Kafka made the
    topic with one replica and min.insync.replicas 2, and refused every acks=all write to
    it after that (found in review)."""
    topic = unique("insync")
    with pytest.raises(TopicSetupFailed, match="TOPIC_MIN_INSYNC=2 is more than the 1"):
        await ensure_topics(infra.kafka_bootstrap, [topic], partitions=1, min_insync=2)
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        assert topic not in await admin.list_topics()
    finally:
        await admin.close()


async def test_a_record_produced_with_an_old_timestamp_is_kept_by_its_arrival(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    """A producer that sets the Kafka timestamp from the message's time (a backfill from
    the old system) made records Kafka's retention deleted within minutes, judged by
    that time: a worker behind then skipped them as "no record" (found in review). The
    topics are created with LogAppendTime, so a record's timestamp is its arrival."""
    topic = unique("appendtime")
    await ensure_topics(infra.kafka_bootstrap, [topic], partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"from 2001", timestamp_ms=991_396_800_000)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), WITHIN)
    finally:
        await consumer.stop()
    assert record.value == b"from 2001"
    assert record.timestamp_type == 1  # LogAppendTime: the broker's time, not 2001's
    assert record.timestamp > 991_396_800_000
