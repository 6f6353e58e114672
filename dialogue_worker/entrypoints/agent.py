"""The faust agent: take a batch, hand it to the persister, which marks it durable.

faust's acks are off for the topic: the persister marks each batch's offsets durable
once it is written (domain.offsets) and the worker commits them itself
(adapters.commits), never past a record that was not made durable. Concurrency stays 1.

While one batch is being written the stream fills the next one (`WriteBehind`), so
taking records off the stream no longer waits for MongoDB. Writes stay one batch at a
time and in offset order, so each chat's seqs follow its partition. At most two batches
are in hand: the one being written and the next.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import faust

from dialogue_worker.domain.records import InboundRecord, Sorted
from dialogue_worker.services.persistence import BatchPersister, partition_offsets
from dialogue_worker.services.write_behind import WriteBehind
from platform_common.logs import partition_fields

log = logging.getLogger(__name__)
Taken = tuple[list[InboundRecord], Sorted]  # a batch's records, sorted


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
        # A null header value (Kafka allows one) stays null in a dead letter or a
        # forwarded copy: they are the record as it was, to replay as is.
        headers=tuple((str(k), None if v is None else bytes(v)) for k, v in headers),
        timestamp_ms=_milliseconds(getattr(message, "timestamp", None)),
    )


#: Kafka's largest timestamp (a signed 64-bit count of milliseconds).
_TIMESTAMP_MAX = 2**63 - 1


def _milliseconds(seconds: object) -> int | None:
    """faust's timestamp (float seconds) as Kafka's (integer milliseconds); None for none.
    Past 2**53 ms a float is not exact: Kafka's largest, 2**63 - 1, came back as 2**63,
    which no signed 64-bit reader of the dead letter's x-dlq-timestamp takes."""
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
        return min(round(seconds * 1000), _TIMESTAMP_MAX)
    return None


def attach_agent(
    app: faust.App, topic: Any, persister: BatchPersister, batch_size: int, within: float
) -> None:
    async def persist_batch(batch: Taken) -> None:
        records, sorted_batch = batch
        outcome = await persister.persist(records, sorted_batch)
        if log.isEnabledFor(logging.DEBUG):  # the offset spans cost a pass over the batch
            counts = {
                "records": len(records),
                "stored": outcome.stored,
                "duplicates": outcome.duplicates,
                "dead_lettered": outcome.dead_lettered,
            }
            for (topic, partition), offsets in partition_offsets(records).items():
                log.debug(  # one line per partition; `batch` counts the whole batch
                    "batch persisted: offsets %d..%d",
                    min(offsets),
                    max(offsets),
                    extra={**partition_fields(topic, partition, min(offsets)), "batch": counts},
                )

    async def persist(stream: Any) -> None:
        writer: WriteBehind[Taken] = WriteBehind(persist_batch)
        try:
            async for events in stream.noack_take(batch_size, within=within):
                records = [inbound(e) for e in events]
                # Decoding and the membership check overlap the write in flight.
                await writer.submit((records, await persister.sort(records)))
            await writer.flush()
        finally:
            await writer.cancel()

    app.agent(topic, name="dialogue_worker.persist", concurrency=1)(persist)
