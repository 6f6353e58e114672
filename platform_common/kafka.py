"""Kafka clients whose metadata covers the topics they use, not the whole cluster.

An aiokafka client that tracks no topic asks the cluster for the metadata of *every*
topic: once at start, and again every `metadata_max_age_ms` (5 minutes). On a shared
cluster that is thousands of topics. Each answer is decoded into a few MB of Python
objects that the client keeps, and every refresh raises the process's memory high-water
mark a little more (measured on a cluster of 1,250 topics: about 4 MB kept per client,
and a worker's RSS rose 10 MB in steps at 5, 10 and 15 minutes). A producer starts
tracking a topic only at its first send, an admin client never does.

`scope_metadata` narrows a client to the topics it needs; a producer or admin client
still learns any other topic it touches later (aiokafka adds it on first use).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient


async def scope_metadata(client: Any, topics: Collection[str]) -> None:
    """Make an `aiokafka.AIOKafkaClient` track `topics` only (fetching their metadata
    now, which also drops what it held of every other topic). No topics: unchanged."""
    if topics:
        await client.set_topics(sorted(topics))


class ScopedProducer(AIOKafkaProducer):  # type: ignore[misc]
    """An `AIOKafkaProducer` that tracks `metadata_topics` from its start."""

    def __init__(self, *, metadata_topics: Collection[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metadata_topics = tuple(metadata_topics)

    async def start(self) -> None:
        await super().start()
        await scope_metadata(self.client, self._metadata_topics)


class ScopedAdminClient(AIOKafkaAdminClient):  # type: ignore[misc]
    """An `AIOKafkaAdminClient` that tracks `metadata_topics` from its start.

    aiokafka offers no public handle on an admin client's cluster client; `_client` is
    read here only, in one place (aiokafka is pinned to a range of minors in pyproject.toml,
    and tests/integration/test_kafka_metadata.py fails if the attribute goes away)."""

    def __init__(self, *, metadata_topics: Collection[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metadata_topics = tuple(metadata_topics)

    async def start(self) -> None:
        await super().start()
        await scope_metadata(self._client, self._metadata_topics)
