"""The events feed's placement of partitions (gateway/adapters/events_feed.py) when its
first placement fails half-way, against a hand-written consumer. Reading real Kafka is
tests/integration/test_gateway_events_feed.py."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from gateway.adapters.events_feed import KafkaEventFeed
from platform_common.retry import Backoff

TOPIC = "dialogue.events"


class Consumer:
    """Three partitions at offset 40; `position` of partition 1 fails the first time."""

    def __init__(self) -> None:
        self.failing = {1}
        self.rewound: list[int] = []
        self.seeks: dict[int, int] = {}

    async def topics(self) -> set[str]:
        return {TOPIC}

    def subscribe(self, topics: list[str]) -> None:
        assert topics == [TOPIC]

    def assignment(self) -> set[int]:
        return {0, 1, 2}

    async def position(self, tp: int) -> int:
        if tp in self.failing:
            self.failing.discard(tp)
            raise KafkaConnectionError("metadata went away")
        return 0 if tp in self.rewound else 40

    def seek(self, tp: int, offset: int) -> None:
        self.seeks[tp] = offset

    async def seek_to_beginning(self, tp: int) -> None:
        self.rewound.append(tp)


async def test_a_first_placement_that_failed_half_way_still_starts_every_partition_at_its_end() -> (
    None
):
    """It used to count as done once any partition was recorded: the retry read the
    others from their beginning, replaying the topic's whole history to the streams."""
    feed = KafkaEventFeed("127.0.0.1:1", TOPIC)
    consumer: Any = Consumer()
    with pytest.raises(KafkaConnectionError):
        await feed._position(consumer, Backoff(0.01, 0.01))
    await feed._position(consumer, Backoff(0.01, 0.01))
    assert consumer.rewound == [] and feed.ready()
    assert feed._next == {0: 40, 1: 40, 2: 40}
