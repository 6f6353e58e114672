"""Topic creation at worker start: the topics are served, with leaders, before it returns."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from dialogue_worker.adapters.topics import Durability, TopicSetupFailed, ensure_topics
from infra.local import LocalSettings


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
