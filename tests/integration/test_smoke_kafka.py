"""aiokafka against the real broker: topics, acks=all, groups, committed offsets."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.local import LocalSettings
from tests.support.waiting import eventually


async def _consume(infra: LocalSettings, topic: str, group: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        while len(values) < count:
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, f"no records after {len(values)} of {count}"
            for records in batch.values():
                values.extend(r.value for r in records if r.value is not None)
        await consumer.commit()
        return values
    finally:
        await consumer.stop()


async def test_produce_consume_commit_and_resume(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    topic, group = unique("smoke"), unique("group")
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        # Right after creation the controller may not have the partitions' metadata yet.
        await eventually(
            lambda: admin.describe_topics([topic]),
            lambda described: len(described[0]["partitions"]) == 3,
            what="the new topic's 3 partitions described",
        )
    finally:
        await admin.close()

    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for i in range(30):
            meta = await producer.send_and_wait(
                topic, f"first-{i}".encode(), key=str(i % 5).encode()
            )
            assert meta.offset >= 0
        first = await _consume(infra, topic, group, 30)
        assert sorted(first) == sorted(f"first-{i}".encode() for i in range(30))

        for i in range(10):
            await producer.send_and_wait(topic, f"second-{i}".encode(), key=b"k")
    finally:
        await producer.stop()

    # A restarted consumer in the same group resumes after the committed offsets.
    second = await _consume(infra, topic, group, 10)
    assert second == [f"second-{i}".encode() for i in range(10)]
