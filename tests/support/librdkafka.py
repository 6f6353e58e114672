"""Producing as a producer outside this project would: librdkafka (confluent-kafka)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[bytes, bytes]],
    config: Mapping[str, Any] | None = None,
) -> None:
    """Produce (key, value) pairs with librdkafka and wait for every ack. `config` holds
    librdkafka settings beyond the bootstrap servers; without it, librdkafka's defaults
    apply (its consistent_random partitioner among them)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, **(config or {})})
    failures: list[str] = []
    for key, value in records:
        producer.produce(
            topic, value, key, on_delivery=lambda err, _: err and failures.append(str(err))
        )
        producer.poll(0)
    assert producer.flush(30) == 0 and failures == [], failures
