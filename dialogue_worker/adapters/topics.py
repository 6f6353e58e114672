"""Creating the message topic and its dead-letter topic, idempotently (auto-creation is off)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from dialogue_worker.errors import WorkerError

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36


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
        described = await admin.describe_topics(list(topics))
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
