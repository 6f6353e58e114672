"""Kafka clients whose metadata covers the topics they use, not the whole cluster.

An aiokafka client that tracks no topic asks the cluster for the metadata of *every*
topic at each refresh (`metadata_max_age_ms`, 5 minutes; aiokafka < 0.13 also at start).
On a shared cluster that is thousands of topics. Each answer is decoded into a few MB of
Python objects that the client keeps, and every refresh raises the process's memory
high-water mark a little more (measured on a cluster of 1,250 topics: about 4 MB kept
per client, and a worker's RSS rose 10 MB in steps at 5, 10 and 15 minutes). A producer
starts tracking a topic only at its first send, a consumer at its first assignment, an
admin client never.

The `Scoped*` clients track their `metadata_topics` from their start; they still learn
any other topic they touch later (aiokafka adds it on first use).
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    InvalidProducerIdMapping,
    KafkaConnectionError,
    KafkaError,
    OutOfOrderSequenceNumber,
    UnknownProducerId,
)

#: Errors after which an idempotent producer's sequence numbers no longer match the
#: broker's for some partition: every later send there fails the same way, so the
#: producer must be made again (a new producer id). aiokafka moves a partition's sequence
#: on when it drops an expired batch (a partition without a leader for
#: request_timeout_ms); its own producer is never renewed (aiokafka issue #1017).
STALE_PRODUCER = (OutOfOrderSequenceNumber, UnknownProducerId, InvalidProducerIdMapping)


class _ScopedStart:
    """Mixin of the Scoped* clients: `metadata_topics` tracked from `start()` on."""

    def __init__(self, *, metadata_topics: Collection[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metadata_topics = tuple(metadata_topics)

    def _cluster_client(self) -> Any:
        raise NotImplementedError

    async def start(self) -> None:
        """Start, then track `metadata_topics` only: their metadata is fetched now, which
        also drops what the client held of every other topic (no topics: unchanged)."""
        await super().start()  # type: ignore[misc]
        if self._metadata_topics:
            await self._cluster_client().set_topics(sorted(self._metadata_topics))


class ScopedProducer(_ScopedStart, AIOKafkaProducer):  # type: ignore[misc]
    def _cluster_client(self) -> Any:
        return self.client


# aiokafka offers no public handle on a consumer's or an admin client's cluster client;
# `_client` is read here only (aiokafka is pinned to a range of minors in pyproject.toml,
# and tests/integration/test_kafka_metadata.py fails if the attribute goes away).


class ScopedConsumer(_ScopedStart, AIOKafkaConsumer):  # type: ignore[misc]
    def _cluster_client(self) -> Any:
        return self._client


class ScopedAdminClient(_ScopedStart, AIOKafkaAdminClient):  # type: ignore[misc]
    def _cluster_client(self) -> Any:
        return self._client


async def close_producer(producer: Any, within: float, why: str) -> bool:
    """Stop a producer, waiting at most `within` seconds for what it still holds; False
    when Kafka did not take it all in time.

    An idempotent aiokafka producer retries a batch for an unreachable leader for ever,
    and its stop() waits for it; a stop() cut short by a timeout leaves its sender running
    for good. So: flush, bounded; on time out stop the sender and fail what is left (its
    senders see `why`), then stop()."""
    try:
        async with asyncio.timeout(within):
            await producer.flush()
        flushed = True
    except TimeoutError:
        flushed = False
        await producer._sender.close()
        fail_unsent(producer._message_accumulator, KafkaConnectionError(why))
    await producer.stop()
    return flushed


def fail_unsent(accumulator: Any, exc: KafkaError) -> None:
    """Fail every batch aiokafka still holds, and mark each failure seen: nobody waits on
    a batch's own futures, so asyncio would log "Future exception was never retrieved"
    for each at exit (a record's sender got its error already)."""
    batches = [b for queue in accumulator._batches.values() for b in queue]
    batches += list(accumulator._pending_batches)
    # A batch sent once and queued again for a retry still has the callback that removes
    # it from the pending set when it ends, but is no longer in that set: failing it
    # raised KeyError in that callback (an asyncio error line per batch). In the set,
    # the callback finds it; for a batch never sent, being there changes nothing.
    accumulator._pending_batches.update(batches)
    accumulator.fail_all(exc)
    for batch in batches:
        for future in (batch.future, batch._drain_waiter, *(f for f, _ in batch._msg_futures)):
            if future.done() and not future.cancelled():
                future.exception()
