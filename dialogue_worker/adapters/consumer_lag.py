"""Where the worker stands in each assigned partition, read from faust's consumer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust

from dialogue_worker.services.health import PartitionState

TopicPartition = tuple[str, int]


class ConsumerLag:
    """Per assigned partition: the next offset to persist and the lag behind the high
    watermark. `next_offsets` is what the persister has made durable; before it has
    persisted anything in a partition, faust's last committed offset stands in."""

    def __init__(self, app: faust.App, next_offsets: Mapping[TopicPartition, int]) -> None:
        self._app = app
        self._next = next_offsets

    def per_partition(self) -> dict[TopicPartition, PartitionState]:
        if not self._app.started:
            return {}
        consumer = self._app.consumer
        committed: Mapping[Any, int | None] = getattr(consumer, "_committed_offset", {})
        states = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            position = self._next.get((tp.topic, tp.partition))
            if position is None and committed.get(tp) is not None:
                position = committed[tp] + 1  # type: ignore[operator]
            if highwater is not None and position is not None:
                lag = max(0, highwater - position)
                states[(tp.topic, tp.partition)] = PartitionState(lag, position)
        return states

    def lags(self) -> dict[TopicPartition, int]:
        return {tp: state.lag for tp, state in self.per_partition().items()}
