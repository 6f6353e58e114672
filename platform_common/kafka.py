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

from collections.abc import Collection
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import InvalidProducerIdMapping, OutOfOrderSequenceNumber, UnknownProducerId

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
