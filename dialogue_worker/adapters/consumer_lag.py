"""Where the worker stands in each assigned partition, read from faust's consumer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust

from dialogue_worker.services.health import PartitionState

TopicPartition = tuple[str, int]


class ConsumerLag:
    """Per assigned partition: the next offset to persist and the lag behind the high
    watermark. The position is the lower of what the persister has made durable
    (`next_offsets`) and faust's committed offset (the next offset to read, as Kafka
    keeps it): a record skipped and not yet
    redelivered holds the commit back, so it shows as lag (and, if it stays, as a stuck
    partition) even though newer records were stored."""

    def __init__(self, app: faust.App, next_offsets: Mapping[TopicPartition, int]) -> None:
        self._app = app
        self._next = next_offsets
        #: End offsets of assigned partitions faust has not fetched from (no high watermark
        #: yet), so a partition that is never fetched still shows its lag.
        self._ends: dict[TopicPartition, int] = {}

    async def refresh_ends(self) -> None:
        """Ask Kafka for the end offsets of assigned partitions without a high watermark."""
        if not self._app.started:
            return
        consumer = self._app.consumer
        unknown = [tp for tp in consumer.assignment() if consumer.highwater(tp) is None]
        ends = await consumer.highwaters(*unknown) if unknown else {}
        self._ends = {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    def per_partition(self) -> dict[TopicPartition, PartitionState]:
        if not self._app.started:
            return {}
        consumer = self._app.consumer
        committed: Mapping[Any, int | None] = getattr(consumer, "_committed_offset", {})
        states = {}
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                highwater = self._ends.get((tp.topic, tp.partition))
            positions = [self._next.get((tp.topic, tp.partition))]
            if committed.get(tp) is not None:
                positions.append(committed[tp])
            known = [p for p in positions if p is not None]
            position = min(known) if known else None
            if highwater is not None and position is not None:
                lag = max(0, highwater - position)
                states[(tp.topic, tp.partition)] = PartitionState(lag, position)
        return states

    def lags(self) -> dict[TopicPartition, int]:
        return {tp: state.lag for tp, state in self.per_partition().items()}
