"""Creating the message topic and its dead-letter topic, idempotently (auto-creation is off)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from dialogue_worker.errors import WorkerError

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36
#: Seconds a just-created topic may take to show up, with leaders, in the metadata (a
#: broker that just started, on a loaded machine, took more than 30).
TOPICS_READY_WITHIN = 60.0


class TopicSetupFailed(WorkerError):
    """The topics could not be created or described; the worker cannot start."""


async def ensure_topics(
    bootstrap: str, topics: Sequence[str], partitions: int, replication: int
) -> dict[str, int]:
    """Create missing topics; returns the partition count each topic has."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="dialogue-worker-admin")
    try:
        await admin.start()
        response = await admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=replication) for t in topics]
        )
        for result in response.to_object()["topic_errors"]:
            code = result["error_code"]
            if code == 0:
                log.info("topic %s created with %d partitions", result["topic"], partitions)
            elif code != TOPIC_ALREADY_EXISTS:
                raise TopicSetupFailed(
                    f"cannot create topic {result['topic']}: {result['error_message']}"
                )
        described = await _when_served(admin, topics, TOPICS_READY_WITHIN)
    except KafkaError as exc:
        raise TopicSetupFailed(f"cannot reach Kafka at {bootstrap}: {exc!r}") from exc
    finally:
        await admin.close()
    counts = {t["topic"]: len(t["partitions"]) for t in described}
    for topic, count in counts.items():
        if count != partitions:
            log.warning(
                "topic %s has %d partitions, TOPIC_PARTITIONS is %d: left unchanged",
                topic,
                count,
                partitions,
            )
    return counts


def is_served(topic: dict[str, Any]) -> bool:
    """A described topic whose every partition has a leader."""
    partitions = topic["partitions"]
    return (
        topic["error_code"] == 0 and bool(partitions) and all(p["leader"] >= 0 for p in partitions)
    )


async def _when_served(
    admin: AIOKafkaAdminClient, topics: Sequence[str], within: float
) -> list[dict[str, Any]]:
    """The topics' metadata once every partition has a leader.

    A broker that has just started (or just created the topic) can answer with no
    partitions for a moment. A consumer that joins its group then is assigned nothing
    and stays idle until the next metadata refresh, minutes later, so the worker waits.
    """
    deadline = time.monotonic() + within
    while True:
        described: list[dict[str, Any]] = await admin.describe_topics(list(topics))
        if len(described) == len(topics) and all(is_served(t) for t in described):
            return described
        if time.monotonic() > deadline:
            waiting = sorted(t["topic"] for t in described if not is_served(t))
            raise TopicSetupFailed(
                f"topics {waiting or list(topics)} have no partition leaders in Kafka's "
                f"metadata after {within:g}s"
            )
        await asyncio.sleep(0.2)


def partitioner(partitions: int) -> Callable[[str], int]:
    """The partition of a chat's records: murmur2 of the chat id, as Kafka's Java client
    and aiokafka place a keyed record (librdkafka does so with partitioner=murmur2_random)."""
    ids = list(range(partitions))
    place = DefaultPartitioner()
    return lambda cid: int(place(cid.encode(), ids, ids))
