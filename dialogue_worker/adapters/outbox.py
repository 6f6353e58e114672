"""What the worker produces to Kafka: dead letters, misplaced records, and events.

One idempotent acks=all producer for all three; `start()` and `stop()` are safe to call
twice. Every call returns once each record is acknowledged, or raises the retryable
OutboxUnavailable, so the agent never acks a batch whose records are not durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka.errors import KafkaError

from dialogue_worker.domain.records import InboundRecord, Rejected
from dialogue_worker.errors import OutboxUnavailable
from dialogue_worker.services.ports import Event
from platform_common.kafka import ScopedProducer

REASON = "x-dlq-reason"  # human-readable reason, UTF-8
KIND = "x-dlq-kind"  # invalid | unknown_chat | not_member | unstorable | id_conflict
SOURCE_TOPIC = "x-dlq-topic"
SOURCE_PARTITION = "x-dlq-partition"
SOURCE_OFFSET = "x-dlq-offset"
#: On a forwarded record: where it was read ("topic/partition/offset").
FORWARDED_FROM = "x-forwarded-from"


def dlq_headers(rejected: Rejected) -> list[tuple[str, bytes]]:
    """The record's own headers followed by the x-dlq-* headers."""
    record = rejected.record
    return [
        *record.headers,
        (REASON, rejected.reason.encode()),
        (KIND, rejected.kind.value.encode()),
        (SOURCE_TOPIC, record.topic.encode()),
        (SOURCE_PARTITION, str(record.partition).encode()),
        (SOURCE_OFFSET, str(record.offset).encode()),
    ]


class KafkaOutbox:
    """Owns the producer; the topics are the dead-letter, message and events topics."""

    def __init__(self, bootstrap: str, *, dlq_topic: str, topic: str, events_topic: str) -> None:
        self.dlq_topic = dlq_topic
        self.topic = topic
        self.events_topic = events_topic
        self._bootstrap = bootstrap
        self._producer: ScopedProducer | None = None

    async def start(self) -> None:
        if self._producer is None:
            producer = ScopedProducer(
                metadata_topics=(self.topic, self.events_topic, self.dlq_topic),
                bootstrap_servers=self._bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                client_id="dialogue-worker",
            )
            await producer.start()
            self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        await self._send(
            [(self.dlq_topic, r.record.value, r.record.key, dlq_headers(r)) for r in rejected]
        )

    async def forward(self, records: Sequence[tuple[InboundRecord, str]]) -> None:
        sends = []
        for record, cid in records:
            where = f"{record.topic}/{record.partition}/{record.offset}".encode()
            headers = [*record.headers, (FORWARDED_FROM, where)]
            sends.append((self.topic, record.value, cid.encode(), headers))
        await self._send(sends)

    async def publish(self, events: Sequence[Event]) -> None:
        await self._send([(self.events_topic, e.to_bytes(), e.key(), []) for e in events])

    async def _send(
        self, records: Sequence[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]]
    ) -> None:
        """Send in order (one partition keeps the order of what is sent to it); wait for all."""
        if self._producer is None:
            raise OutboxUnavailable("the Kafka producer is not started")
        try:
            pending: list[Any] = [
                await self._producer.send(topic, value, key=key, headers=headers)
                for topic, value, key, headers in records
            ]
            await asyncio.gather(*pending)
        except KafkaError as exc:
            raise OutboxUnavailable(f"cannot produce to Kafka: {exc!r}") from exc
