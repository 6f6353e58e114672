"""The dead-letter topic: refused records with their original key, value and the reason."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from dialogue_worker.domain.records import Rejected
from dialogue_worker.errors import DeadLetterUnavailable

REASON = "x-dlq-reason"  # human-readable reason, UTF-8
KIND = "x-dlq-kind"  # invalid | unknown_chat | not_member
SOURCE_TOPIC = "x-dlq-topic"
SOURCE_PARTITION = "x-dlq-partition"
SOURCE_OFFSET = "x-dlq-offset"


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


class DeadLetterProducer:
    """Owns an idempotent acks=all producer; start() and stop() are safe to call twice."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self._bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
                acks="all",
                enable_idempotence=True,
                client_id="dialogue-worker-dlq",
            )
            await producer.start()
            self._producer = producer

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def send(self, rejected: Sequence[Rejected]) -> None:
        if self._producer is None:
            raise DeadLetterUnavailable("dead-letter producer is not started")
        try:
            pending = [
                await self._producer.send(
                    self.topic, r.record.value, key=r.record.key, headers=dlq_headers(r)
                )
                for r in rejected
            ]
            await asyncio.gather(*pending)
        except KafkaError as exc:
            raise DeadLetterUnavailable(f"cannot write to {self.topic}: {exc!r}") from exc
