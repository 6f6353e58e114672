"""How far each partition is durable without a hole: the only offset the worker commits.

A record is durable once it is stored, dead-lettered or forwarded. The worker commits a
partition up to `DurableOffsets.through`: the committed offset it was assigned at, moved
over every offset marked durable since, and stopping at the first one that is not. So a
commit never passes a record that was skipped, whatever the consumer delivered: faust's
own commit follows its acks and its idea of offset gaps, and both were seen passing
records it had dropped after quick rebalances (issue 13).

An offset that holds no record (a transaction marker, a record removed by retention)
is never written: it is marked done (`mark_range`) once Kafka shows it empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

TopicPartition = tuple[str, int]


class _Partition:
    __slots__ = ("runs", "start")

    def __init__(self) -> None:
        self.start: int | None = None  # everything below is durable (None: not known yet)
        self.runs: list[tuple[int, int]] = []  # durable [begin, end) ranges above start

    def absorb(self) -> None:
        if self.start is None:
            return
        while self.runs and self.runs[0][0] <= self.start:
            self.start = max(self.start, self.runs.pop(0)[1])

    def add(self, begin: int, end: int) -> None:
        if self.start is not None and end <= self.start:
            return
        runs = sorted([*self.runs, (begin, end)])
        merged = [runs[0]]
        for b, e in runs[1:]:
            last_b, last_e = merged[-1]
            if b <= last_e:
                merged[-1] = (last_b, max(last_e, e))
            else:
                merged.append((b, e))
        self.runs = merged
        self.absorb()


def _runs(offsets: Iterable[int]) -> Iterator[tuple[int, int]]:
    """Consecutive offsets as [begin, end) ranges."""
    begin = end = None
    for offset in sorted(offsets):
        if end is not None and offset <= end:
            end = max(end, offset + 1)
            continue
        if begin is not None and end is not None:
            yield begin, end
        begin, end = offset, offset + 1
    if begin is not None and end is not None:
        yield begin, end


class DurableOffsets:
    """Per assigned partition: where it starts, what has been made durable since."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Partition] = {}

    def assign(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            self._parts.setdefault(tp, _Partition())

    def revoke(self, tps: Iterable[TopicPartition]) -> None:
        """Another worker owns these now; marks arriving for them later are ignored."""
        for tp in tps:
            self._parts.pop(tp, None)

    def begin(self, tp: TopicPartition, committed: int) -> None:
        """The partition's committed offset when it was assigned: all below is durable."""
        part = self._parts.get(tp)
        if part is None:
            return
        part.start = committed if part.start is None else max(part.start, committed)
        part.absorb()

    def mark(self, tp: TopicPartition, offsets: Iterable[int]) -> None:
        """These records of the partition are durable."""
        part = self._parts.get(tp)
        if part is None:
            return
        for begin, end in _runs(offsets):
            part.add(begin, end)

    def mark_range(self, tp: TopicPartition, begin: int, end: int) -> None:
        """Offsets [begin, end) are done (durable, or shown to hold no record)."""
        part = self._parts.get(tp)
        if part is not None and begin < end:
            part.add(begin, end)

    def through(self, tp: TopicPartition) -> int | None:
        """The first offset not known to be durable (what may be committed), if known."""
        part = self._parts.get(tp)
        return None if part is None else part.start

    def owns(self, tp: TopicPartition) -> bool:
        """The partition is assigned to this worker."""
        return tp in self._parts

    def assigned(self) -> list[TopicPartition]:
        return sorted(self._parts)

    def unknown(self) -> list[TopicPartition]:
        """Assigned partitions whose committed offset is not known yet."""
        return sorted(tp for tp, part in self._parts.items() if part.start is None)
