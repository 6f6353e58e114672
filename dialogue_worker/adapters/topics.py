"""Creating the message topic and its dead-letter topic, idempotently (auto-creation is off)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2

from dialogue_worker.errors import WorkerError

log = logging.getLogger(__name__)
TOPIC_ALREADY_EXISTS = 36
#: Seconds a just-created topic may take to show up, with leaders, in the metadata (a
#: broker that just started, on a loaded machine, took more than 30).
TOPICS_READY_WITHIN = 60.0
_DEFAULT = DefaultPartitioner()


class TopicSetupFailed(WorkerError):
    """The topics could not be created or described; the worker cannot start."""


@dataclass(frozen=True)
class Durability:
    """How many copies of each record a topic keeps, and how many must have a write."""

    replication: int
    min_insync: int

    @classmethod
    def for_cluster(cls, brokers: int, replication: int = 0, min_insync: int = 0) -> Durability:
        """What topics get: the settings, or (0) three copies when there are three brokers
        and two in sync for a write then, so one broker can be lost without losing one."""
        rf = replication or min(3, max(1, brokers))
        return cls(rf, min_insync or (2 if rf >= 3 else 1))


@dataclass(frozen=True)
class Topics:
    """What `ensure_topics` found: partitions per topic, and topics weaker than wanted."""

    partitions: dict[str, int]
    wanted: Durability
    weaker: dict[str, Durability] = field(default_factory=dict)


async def ensure_topics(
    bootstrap: str,
    topics: Sequence[str],
    partitions: int,
    replication: int = 0,
    min_insync: int = 0,
) -> Topics:
    """Create missing topics (replication and min ISR: `Durability.for_cluster`) and
    report existing ones that keep fewer copies or take writes with fewer in sync."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="dialogue-worker-admin")
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        live = len(cluster["brokers"])
        # The brokers' own default replication counts the brokers that are down as well.
        configured = await _broker_setting(admin, cluster, "default.replication.factor")
        wanted = Durability.for_cluster(max(live, configured or 1), replication, min_insync)
        if wanted.min_insync > wanted.replication:  # TOPIC_REPLICATION left to the cluster
            raise TopicSetupFailed(
                f"TOPIC_MIN_INSYNC={min_insync} is more than the {wanted.replication} "
                "replica(s) topics get on this cluster: Kafka would refuse every acks=all "
                "write to a topic created so (NotEnoughReplicas); lower it or set "
                "TOPIC_REPLICATION"
            )
        if live < wanted.replication:
            log.warning(
                "%d broker(s) up, topics need %d replicas: a missing topic cannot be "
                "created until enough brokers are up",
                live,
                wanted.replication,
            )
        configs = {
            "min.insync.replicas": str(wanted.min_insync),
            # A record's timestamp is when it arrived, not what its producer set: Kafka's
            # retention judges a segment by its newest timestamp, so records produced with
            # old ones (a backfill stamped with the messages' own times) were deleted
            # within minutes, before a worker that was behind had read them (found in
            # review, 2026-12-08). The producer's time stays in the record's value.
            "message.timestamp.type": "LogAppendTime",
        }
        response = await admin.create_topics(
            [NewTopic(t, partitions, wanted.replication, topic_configs=configs) for t in topics]
        )
        for result in response.to_object()["topic_errors"]:
            code = result["error_code"]
            if code == 0:
                log.info(
                    "topic %s created with %d partitions, %d replicas, min.insync.replicas %d",
                    result["topic"],
                    partitions,
                    wanted.replication,
                    wanted.min_insync,
                )
            elif code != TOPIC_ALREADY_EXISTS:
                raise TopicSetupFailed(
                    f"cannot create topic {result['topic']}: {result['error_message']}"
                )
        described = await _when_served(admin, topics, TOPICS_READY_WITHIN)
        found = await _durability(admin, described)
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
    weaker = {
        t: d
        for t, d in found.items()
        if d.replication < wanted.replication or d.min_insync < wanted.min_insync
    }
    for topic, has in weaker.items():
        log.warning(
            "topic %s keeps %d replicas with min.insync.replicas %d, weaker than the %d/%d "
            "wanted: a write it acknowledges may be lost with a broker. Left unchanged "
            "(raise them with kafka-reassign-partitions and kafka-configs, see docs/worker.md)",
            topic,
            has.replication,
            has.min_insync,
            wanted.replication,
            wanted.min_insync,
        )
    return Topics(counts, wanted, weaker)


async def _broker_setting(
    admin: AIOKafkaAdminClient, cluster: dict[str, Any], name: str
) -> int | None:
    """An integer setting of the first broker the cluster lists (None if unreadable)."""
    brokers = cluster.get("brokers") or []
    if not brokers:
        return None
    resource = ConfigResource(ConfigResourceType.BROKER, str(brokers[0]["node_id"]), {name: None})
    for response in await admin.describe_configs([resource]):
        for found in response.to_object()["resources"]:
            for entry in found["config_entries"]:
                if entry.get("config_names", entry.get("config_name")) == name:
                    return int(entry["config_value"])
    return None


async def _durability(
    admin: AIOKafkaAdminClient, described: list[dict[str, Any]]
) -> dict[str, Durability]:
    """Each described topic's replication factor (its smallest) and min.insync.replicas."""
    names = [t["topic"] for t in described]
    responses = await admin.describe_configs(
        [
            ConfigResource(ConfigResourceType.TOPIC, name, {"min.insync.replicas": None})
            for name in names
        ]
    )
    min_isr: dict[str, int] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            for entry in resource["config_entries"]:
                name = entry.get("config_names", entry.get("config_name"))
                if name == "min.insync.replicas":
                    min_isr[resource["resource_name"]] = int(entry["config_value"])
    return {
        t["topic"]: Durability(
            min(len(p["replicas"]) for p in t["partitions"]), min_isr.get(t["topic"], 1)
        )
        for t in described
    }


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


#: Keys whose hash is remembered: chat ids (24 bytes) and such. A dead letter keeps the
#: key its producer sent, up to the broker's limit, and is hashed each time.
CACHED_KEY_MAX = 64


@functools.lru_cache(maxsize=4_096)
def _key_hash(key: bytes) -> int:
    """murmur2 of a record key, positive, as Kafka's default partitioner takes it."""
    return int(murmur2(key)) & 0x7FFFFFFF


def keyed_partitioner(key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
    """aiokafka's default placement, with the hash of a short key remembered: a worker
    publishes every event of a chat under one key, and hashing it again in Python for
    each record was a few per cent of the worker's time (4,096 keys: about 1 MB).
    Unkeyed records, long keys and keys that are not `bytes`: the default itself."""
    if type(key) is not bytes or len(key) > CACHED_KEY_MAX:
        return int(_DEFAULT(key, all_partitions, available))
    return all_partitions[_key_hash(key) % len(all_partitions)]


def partitioner(partitions: int) -> Callable[[str], int]:
    """The partition of a chat's records: murmur2 of the chat id, as Kafka's Java client
    and aiokafka place a keyed record (librdkafka does so with partitioner=murmur2_random)."""
    ids = list(range(partitions))
    return lambda cid: keyed_partitioner(cid.encode(), ids, ids)
