"""Each partition's records are persisted in offset order, none passed over.

The consumer can hand a partition's records over with a hole: after quick rebalances
faust was seen dropping records it had fetched again, and delivering records buffered
before a seek ahead of the ones fetched after it. Storing past such a hole would give
the records after it their chat's seqs first, and the skipped ones later seqs (or none).

`PartitionOrder.admit` looks at each partition's records of a batch in offset order,
from where the partition is durable (`DurableOffsets.through`):
- records of a partition it no longer owns are dropped (their new owner reads them); a
  partition just assigned first learns where it starts (its committed offset). While
  Kafka cannot say (`learn` failing), its records are held back and the partition is
  read again from the first of them: written unchecked, a record handed over past a hole
  would take its chat's next seq before the records in the hole (found in review). One
  try to learn per `reseek_after` seconds after a failure, so the batches of the other
  partitions do not each wait for it;
- a record below the next expected offset is a repeat of one already handled: admitted
  (writing it again changes nothing);
- the expected one is admitted;
- past a hole, Kafka is asked whether the hole holds a record (`PartitionLog`). If not
  (transaction markers, retention), the hole is marked as done and the record admitted;
  offsets below the partition's first retained one are counted and logged apart, as an
  error: their records were deleted before they were stored, and are lost.
  If it does, that record and every later one of the partition in the batch are held
  back, and the partition is read again from the hole (at most once per `reseek_after`
  seconds for one offset: records buffered before the seek still come first).

A hole at the end of a partition is never followed by a record that would show it: a
transactional producer's last commit marker leaves the high watermark one past the last
record. `mend_tails`, on the worker's watch timer, passes such a tail once a partition has
made durable every record handed over and has stood still, short of its high watermark,
for one period; so a quiet transactional partition never shows lag for long, nor as stuck.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from dialogue_worker.domain.offsets import DurableOffsets
from dialogue_worker.domain.records import InboundRecord
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.health import PartitionState
from dialogue_worker.services.ports import PartitionLog
from platform_common.logs import partition_fields

log = logging.getLogger(__name__)
TopicPartition = tuple[str, int]
#: Seconds before a partition is sought back to the same offset again.
RESEEK_AFTER = 2.0


class PartitionOrder:
    def __init__(
        self,
        ledger: DurableOffsets,
        partitions: PartitionLog,
        metrics: WorkerMetrics,
        *,
        learn: Callable[[], Awaitable[None]] | None = None,
        reseek_after: float = RESEEK_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ledger = ledger
        self._partitions = partitions
        self._metrics = metrics
        self._learn = learn or _nothing  # reads the committed offsets of new partitions
        self._reseek_after = reseek_after
        self._clock = clock
        self._sought: dict[TopicPartition, tuple[int, float]] = {}
        #: The first offset handed over of each partition whose start is not known yet.
        self._unlearned: dict[TopicPartition, int] = {}
        #: When learning last failed (-inf: never).
        self._learn_failed = float("-inf")
        #: One past the highest offset handed over, per partition.
        self._handed: dict[TopicPartition, int] = {}
        #: Each partition's position at the last `mend_tails`.
        self._watched: dict[TopicPartition, int] = {}

    async def admit(self, records: Sequence[InboundRecord]) -> list[InboundRecord]:
        """The records of the batch that may be persisted now, each partition's in offset
        order (a batch can hold records buffered before a seek ahead of those read again)."""
        by_partition: dict[TopicPartition, dict[int, InboundRecord]] = {}
        for record in records:  # the first copy of an offset (one read twice is the same)
            offsets = by_partition.setdefault((record.topic, record.partition), {})
            offsets.setdefault(record.offset, record)
        admitted: list[InboundRecord] = []
        for tp, offsets in by_partition.items():
            admitted += await self._admit(tp, [offsets[o] for o in sorted(offsets)])
        return admitted

    async def _admit(self, tp: TopicPartition, records: list[InboundRecord]) -> list[InboundRecord]:
        if not self._ledger.owns(tp):
            return []  # revoked while the records were in hand: their new owner reads them
        want = self._ledger.through(tp)
        if want is None:  # just assigned: read where the partition starts before writing
            await self._learn_start(tp)
            if not self._ledger.owns(tp):
                return []  # revoked while its start was read
            want = self._ledger.through(tp)
        self._handed[tp] = max(self._handed.get(tp, 0), records[-1].offset + 1)
        if want is None:
            await self._hold_unlearned(tp, records[0].offset)
            return []
        self._unlearned.pop(tp, None)
        admitted = []
        for record in records:
            if record.offset < want:  # a repeat of one already handled
                admitted.append(record)
                continue
            if record.offset > want and not await self._hole_is_empty(tp, want, record.offset):
                why = f"records {record.offset}.. were handed over before {want}"
                await self._seek_back(tp, want, why)
                break
            admitted.append(record)
            want = record.offset + 1
        return admitted

    async def mend(self, tp: TopicPartition, end: int) -> bool:
        """Mark [through, first record) done, if Kafka shows the partition waits at offsets
        without a record: for a partition with lag and nothing handed over after the hole
        (the Rewinder asks, `end` being the high watermark), e.g. a transaction's last
        marker. True if the partition moved."""
        through = self._ledger.through(tp)
        if through is None or through >= end:
            return False
        first = await self._partitions.first_record(tp, through, end)
        to = end if first is None else first
        if to <= through:
            return False  # a record is there, still to be handed over
        await self._pass_empty(tp, through, to)
        return True

    async def mend_tails(
        self, states: Mapping[TopicPartition, PartitionState]
    ) -> list[TopicPartition]:
        """On the watch timer: `mend` each partition that has lag although every record
        handed over is durable, and whose position has not moved since the last call (one
        Kafka probe each; none for a partition that moves or still has records in hand).
        The partitions that moved."""
        watched, self._watched = self._watched, {tp: s.position for tp, s in states.items()}
        self._handed = {tp: end for tp, end in self._handed.items() if self._ledger.owns(tp)}
        self._unlearned = {tp: o for tp, o in self._unlearned.items() if self._ledger.owns(tp)}
        mended = []
        for tp, state in sorted(states.items()):
            if state.lag <= 0 or watched.get(tp) != state.position:
                continue
            if self._handed.get(tp, 0) > state.position:
                continue  # a record handed over is still being written
            try:
                if await self.mend(tp, state.position + state.lag):
                    mended.append(tp)
            except Exception as exc:  # Kafka did not say: again next period (or the Rewinder)
                log.warning(
                    "could not look for records after offset %d: %s",
                    state.position,
                    exc,
                    extra=partition_fields(*tp, state.position),
                )
                break  # the others would wait for the same Kafka
        return mended

    async def _learn_start(self, tp: TopicPartition) -> None:
        """Ask Kafka where the partition starts: at once, unless asking failed less than
        `reseek_after` seconds ago (each try can take seconds; a batch waits for it)."""
        now = self._clock()
        if now - self._learn_failed < self._reseek_after:
            return
        await self._learn()
        if self._ledger.owns(tp) and self._ledger.through(tp) is None:
            self._learn_failed = now

    async def _hold_unlearned(self, tp: TopicPartition, first: int) -> None:
        """Hold back records of a partition whose start Kafka could not say, and read it
        again from the first offset handed over since it was assigned."""
        start = min(first, self._unlearned.get(tp, first))
        self._unlearned[tp] = start
        why = (
            f"where the partition starts is unknown (Kafka unreachable?): records {first}.. "
            "are written once it is known"
        )
        await self._seek_back(tp, start, why)

    async def _hole_is_empty(self, tp: TopicPartition, start: int, end: int) -> bool:
        try:
            first = await self._partitions.first_record(tp, start, end)
        except Exception as exc:  # Kafka did not say: hold the records, as if it did
            log.warning(
                "could not look into offsets %d..%d: %s",
                start,
                end - 1,
                exc,
                extra=partition_fields(*tp, start),
            )
            return False
        if first is not None:
            return False
        await self._pass_empty(tp, start, end)
        return True

    async def _pass_empty(self, tp: TopicPartition, start: int, end: int) -> None:
        """Mark offsets [start, end), which Kafka showed to hold no record, done; and tell
        the ones below the partition's first retained offset (records deleted before they
        were stored: lost) from the rest (transaction markers)."""
        self._ledger.mark_range(tp, start, end)
        try:
            kept_from = await self._partitions.start(tp)
        except Exception as exc:  # the hole is empty either way; only its cause is unknown
            kept_from = start
            log.warning(
                "could not ask where the partition starts (%s): offsets %d..%d are counted "
                "as transaction markers, though retention may have deleted records there",
                exc,
                start,
                end - 1,
                extra=partition_fields(*tp, start),
            )
        expired = min(kept_from, end) - start
        if expired > 0:
            self._metrics.offsets_expired.inc(expired)
            log.error(
                "offsets %d..%d were deleted by Kafka (retention) before this worker stored "
                "them: the records there are lost, unless an earlier owner of the partition "
                "stored them without committing; the topic's retention is shorter than the "
                "worker's lag",
                start,
                start + expired - 1,
                extra=partition_fields(*tp, start),
            )
        first_marker = max(kept_from, start)
        if end > first_marker:
            self._metrics.offsets_skipped.inc(end - first_marker)
            log.info(
                "offsets %d..%d hold no record (transaction markers)",
                first_marker,
                end - 1,
                extra=partition_fields(*tp, first_marker),
            )

    async def _seek_back(self, tp: TopicPartition, offset: int, why: str) -> None:
        """Read the partition again from `offset` (its records in hand were held back),
        unless it was sought there less than `reseek_after` seconds ago. `why` is logged
        when it seeks."""
        now = self._clock()
        last = self._sought.get(tp)
        self._metrics.held_back.inc()
        if last is not None and last[0] == offset and now - last[1] < self._reseek_after:
            return  # sought there a moment ago: the records are on their way
        self._sought[tp] = (offset, now)
        log.warning(
            "%s: held back, reading again from %d", why, offset, extra=partition_fields(*tp, offset)
        )
        try:
            await self._partitions.rewind(tp, offset)
        except Exception as exc:  # sought again after RESEEK_AFTER, or by the Rewinder
            log.warning(
                "could not seek back to %d: %s", offset, exc, extra=partition_fields(*tp, offset)
            )
            return
        self._metrics.rewound.inc()


async def _nothing() -> None:
    return None


def in_partition_order(records: Sequence[InboundRecord]) -> bool:
    """Each partition's records come in rising offsets, none twice."""
    last: dict[TopicPartition, int] = {}
    for record in records:
        tp = (record.topic, record.partition)
        if last.get(tp, -1) >= record.offset:
            return False
        last[tp] = record.offset
    return True
