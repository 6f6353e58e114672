"""Where the worker stands in each assigned partition, read from faust's consumer."""

from __future__ import annotations

from typing import Any

import faust

from dialogue_worker.domain.offsets import DurableOffsets
from dialogue_worker.services.health import PartitionState

TopicPartition = tuple[str, int]


class ConsumerLag:
    """Per assigned partition: the next offset to persist and the lag behind the high
    watermark. The position is where the partition is durable without a hole
    (`DurableOffsets.through`, what the worker commits): a record skipped and not yet
    redelivered holds it back, so it shows as lag (and, if it stays, as a stuck
    partition) even though newer records were stored."""

    def __init__(self, app: faust.App, ledger: DurableOffsets) -> None:
        self._app = app
        self._ledger = ledger
        #: End offsets of assigned partitions faust has not fetched from (no high watermark
        #: yet), so a partition that is never fetched still shows its lag.
        self._ends: dict[TopicPartition, int] = {}

    async def refresh_ends(self) -> None:
        """Ask Kafka for the end offsets of assigned partitions without a high watermark."""
        if not self._app.started:
            return
        consumer = self._app.consumer
        unknown = [tp for tp in consumer.assignment() if _highwater(consumer, tp) is None]
        ends = await consumer.highwaters(*unknown) if unknown else {}
        self._ends = {(tp.topic, tp.partition): offset for tp, offset in ends.items()}

    def per_partition(self) -> dict[TopicPartition, PartitionState]:
        if not self._app.started:
            return {}
        consumer = self._app.consumer
        states = {}
        for tp in consumer.assignment():
            highwater = _highwater(consumer, tp)
            if highwater is None:
                highwater = self._ends.get((tp.topic, tp.partition))
            position = self._ledger.through((tp.topic, tp.partition))
            if highwater is not None and position is not None:
                lag = max(0, highwater - position)
                states[(tp.topic, tp.partition)] = PartitionState(lag, position)
        return states

    def lags(self) -> dict[TopicPartition, int]:
        return {tp: state.lag for tp, state in self.per_partition().items()}


def _highwater(consumer: Any, tp: Any) -> int | None:
    """The partition's high watermark as the consumer knows it; None when unknown, or when
    a rebalance in faust's consumer thread took the partition away between reading the
    assignment and this call (aiokafka asserts it is assigned)."""
    try:
        highwater: int | None = consumer.highwater(tp)
    except (AssertionError, AttributeError, KeyError):
        return None
    return highwater
