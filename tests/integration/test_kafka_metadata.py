"""The platform's long-lived Kafka clients hold the metadata of their own topics only.

A client that tracks no topic fetches every topic of the cluster every 5 minutes; on a
cluster with many topics that was the worker's memory growth in the soak
(platform_common/kafka.py). Here the cluster holds at least the topics made below, so a
client that fell back to "every topic" would hold more than it was scoped to.
"""

from __future__ import annotations

from collections.abc import Callable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from dialogue_worker.adapters.faust_app import ScopedFaustProducer
from dialogue_worker.bootstrap import faust_app
from dialogue_worker.settings import WorkerSettings
from infra.local import LocalSettings
from platform_common.kafka import ScopedAdminClient, ScopedConsumer, ScopedProducer


async def make_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(n, num_partitions=1, replication_factor=1) for n in names]
        )
    finally:
        await admin.close()


async def test_scoped_clients_hold_only_their_topics(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    mine, other = unique("scoped-mine"), unique("scoped-other")
    await make_topics(infra.kafka_bootstrap, [mine, other])

    producer = ScopedProducer(bootstrap_servers=infra.kafka_bootstrap, metadata_topics=(mine,))
    admin = ScopedAdminClient(bootstrap_servers=infra.kafka_bootstrap, metadata_topics=(mine,))
    consumer = ScopedConsumer(bootstrap_servers=infra.kafka_bootstrap, metadata_topics=(mine,))
    await producer.start()
    await admin.start()
    await consumer.start()
    try:
        assert producer.client.cluster.topics() == {mine}
        assert admin._client.cluster.topics() == {mine}
        assert consumer._client.cluster.topics() == {mine}
        # A topic used later is still learned (aiokafka adds it on first send).
        await producer.send_and_wait(other, b"x")
        assert producer.client.cluster.topics() == {mine, other}
    finally:
        await producer.stop()
        await admin.close()
        await consumer.stop()


async def test_faust_producer_is_scoped_to_the_worker_topic(tmp_path: object) -> None:
    settings = WorkerSettings(dialogue_env="local", topic="scoped.messages", data_dir=str(tmp_path))
    app = faust_app(settings)
    producer = app.producer
    assert isinstance(producer, ScopedFaustProducer)
    made = producer._new_producer()
    try:
        assert isinstance(made, ScopedProducer)
        assert made._metadata_topics == ("scoped.messages",)
    finally:
        await made.stop()
