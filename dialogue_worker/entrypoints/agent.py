"""The faust agent: take a batch, hand it to the persister, ack it once it is durable.

Acks are manual (`noack_take` + `stream.ack`): faust commits an offset only when every
record before it is acked, so offsets never pass a record that is not yet in MongoDB
or in the dead-letter topic. Concurrency stays 1.

While one batch is being written the stream fills the next one (`WriteBehind`), so
taking records off the stream no longer waits for MongoDB. Writes, and so acks, stay
one batch at a time and in offset order: faust commits the first run of consecutive
acked offsets and checks for a gap at its head only once the partition has a committed
offset, so acks out of order could commit past a record not yet written. At most two
batches are in hand: the one being written and the next.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import faust

from dialogue_worker.domain.records import InboundRecord, Sorted
from dialogue_worker.services.persistence import BatchPersister

log = logging.getLogger(__name__)
T = TypeVar("T")
Taken = tuple[Sequence[Any], list[InboundRecord], Sorted]  # events, their records, sorted


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


class WriteBehind(Generic[T]):
    """Runs `write` for one batch at a time in the background, in the order submitted.

    `submit` waits for the previous write to finish, then starts this one and returns at
    once, so the caller can gather the next batch meanwhile. A failed write raises from
    the next `submit` or `flush` (and is logged when it happens).
    """

    def __init__(self, write: Callable[[T], Awaitable[None]]) -> None:
        self._write = write
        self._in_flight: asyncio.Future[None] | None = None

    async def submit(self, batch: T) -> None:
        await self.flush()
        self._in_flight = asyncio.ensure_future(self._write(batch))
        self._in_flight.add_done_callback(_log_failure)

    async def flush(self) -> None:
        """Wait for the write in flight, if any."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await in_flight

    async def cancel(self) -> None:
        """Abandon the write in flight (its records are not acked, so they are redelivered)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None and not in_flight.done():
            in_flight.cancel()
            await asyncio.gather(in_flight, return_exceptions=True)


def _log_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("batch write failed", exc_info=done.exception())


def attach_agent(
    app: faust.App, topic: Any, persister: BatchPersister, batch_size: int, within: float
) -> None:
    async def persist_and_ack(stream: Any, batch: Taken) -> None:
        events, records, sorted_batch = batch
        outcome = await persister.persist(records, sorted_batch)
        for event in events:
            await stream.ack(event)
        if log.isEnabledFor(logging.DEBUG):  # the offset spans cost a pass over the batch
            log.debug(
                "batch persisted",
                extra={
                    "offsets": _span(records),
                    "stored": outcome.stored,
                    "duplicates": outcome.duplicates,
                    "dead_lettered": outcome.dead_lettered,
                },
            )

    async def persist(stream: Any) -> None:
        writer: WriteBehind[Taken] = WriteBehind(lambda b: persist_and_ack(stream, b))
        try:
            async for events in stream.noack_take(batch_size, within=within):
                records = [inbound(e) for e in events]
                # Decoding and the membership check overlap the write in flight.
                await writer.submit((events, records, await persister.sort(records)))
            await writer.flush()
        finally:
            await writer.cancel()

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
