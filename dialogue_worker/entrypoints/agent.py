"""The faust agent: take a batch, hand it to the persister, ack it once it is durable.

Acks are manual (`noack_take` + `stream.ack`): faust commits an offset only when every
record before it is acked, so offsets never pass a record that is not yet in MongoDB
or in the dead-letter topic. Concurrency stays 1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import faust

from dialogue_worker.domain.records import InboundRecord
from dialogue_worker.services.persistence import BatchPersister

log = logging.getLogger(__name__)


def inbound(event: Any) -> InboundRecord:
    """The raw Kafka record behind a faust event (the value before any deserialisation)."""
    message = event.message
    headers = message.headers or ()
    if isinstance(headers, Mapping):
        headers = headers.items()
    return InboundRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=tuple((str(k), bytes(v or b"")) for k, v in headers),
    )


def _span(records: Iterable[InboundRecord]) -> dict[str, str]:
    """topic/partition -> 'first..last' offsets, for one log line per batch."""
    spans: dict[str, list[int]] = {}
    for r in records:
        spans.setdefault(f"{r.topic}/{r.partition}", []).append(r.offset)
    return {tp: f"{min(o)}..{max(o)}" for tp, o in spans.items()}


def attach_agent(
    app: faust.App, topic: Any, persister: BatchPersister, batch_size: int, within: float
) -> None:
    async def persist(stream: Any) -> None:
        async for events in stream.noack_take(batch_size, within=within):
            records = [inbound(e) for e in events]
            outcome = await persister.persist(records)
            for event in events:
                await stream.ack(event)
            log.debug(
                "batch persisted",
                extra={
                    "offsets": _span(records),
                    "stored": outcome.stored,
                    "duplicates": outcome.duplicates,
                    "dead_lettered": outcome.dead_lettered,
                },
            )

    app.agent(topic, name="dialogue_worker.persist", concurrency=1)(persist)


class ConsumerLag:
    """Lag per assigned partition: high watermark minus the next offset to persist."""

    def __init__(self, app: faust.App, next_offsets: Mapping[tuple[str, int], int]) -> None:
        self._app = app
        self._next = next_offsets

    def per_partition(self) -> dict[tuple[str, int], int]:
        if not self._app.started:
            return {}
        consumer = self._app.consumer
        # faust keeps the last committed offset per partition; used until we persisted some.
        committed: Mapping[Any, int | None] = getattr(consumer, "_committed_offset", {})
        lags = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            position = self._next.get((tp.topic, tp.partition))
            if position is None and committed.get(tp) is not None:
                position = committed[tp] + 1  # type: ignore[operator]
            if highwater is not None and position is not None:
                lags[(tp.topic, tp.partition)] = max(0, highwater - position)
        return lags

    def total(self) -> int | None:
        lags = self.per_partition()
        return sum(lags.values()) if lags else None
