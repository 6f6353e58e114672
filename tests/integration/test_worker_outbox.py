"""The worker's outbox against the real Kafka: where a forwarded record lands."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from contracts.ids import new_id
from dialogue_worker.adapters.outbox import FORWARDED_FROM, KafkaOutbox
from dialogue_worker.adapters.topics import ensure_topics, partitioner
from dialogue_worker.domain.records import InboundRecord
from infra.local import LocalSettings
from tests.support.waiting import eventually


async def test_a_forward_lands_where_the_route_says_not_where_the_key_hashes_now(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    """Partitions added to the topic while workers run: the workers' route still counts
    the old number, the producer's metadata the new one. Forwarded by the route, a
    record lands where every worker's check accepts it (no forwarding for ever)."""
    topic = unique("outbox")
    names = [topic, f"{topic}.dlq", f"{topic}.events"]
    await ensure_topics(infra.kafka_bootstrap, names, partitions=8)
    old_route = partitioner(4)  # what the workers counted when they started
    cids = [new_id() for _ in range(40)]
    moved = [c for c in cids if old_route(c) != partitioner(8)(c)]
    assert moved  # chats the two counts place apart
    outbox = KafkaOutbox(
        infra.kafka_bootstrap, dlq_topic=names[1], topic=topic, events_topic=names[2]
    )
    outbox.route(old_route)
    await outbox.start()
    try:
        await outbox.forward(
            [(InboundRecord(topic, 7, i, None, b"{}"), cid) for i, cid in enumerate(moved)]
        )
    finally:
        await outbox.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=infra.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    landed: dict[str, int] = {}
    try:

        async def read() -> int:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                for msg in msgs:
                    assert dict(msg.headers)[FORWARDED_FROM].startswith(topic.encode())
                    landed[(msg.key or b"").decode()] = msg.partition
            return len(landed)

        await eventually(read, lambda n: n >= len(moved), every=0, what="the forwards")
    finally:
        await consumer.stop()
    assert landed == {cid: old_route(cid) for cid in moved}
