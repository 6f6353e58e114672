"""Topic creation at worker start: the topics are served, with leaders, before it returns."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka.admin import AIOKafkaAdminClient

from dialogue_worker.adapters.topics import Durability, ensure_topics
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
