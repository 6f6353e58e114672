"""PartitionOrder: a partition's records are persisted in offset order, none passed over.

The partition log is a hand-written fake of Kafka's view: which offsets hold records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from dialogue_worker.domain.offsets import DurableOffsets
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.ordering import PartitionOrder
from tests.unit.test_worker_persistence import CID, World, ids, rec

TP = ("msgs", 0)


class FakeLog:
    """Offsets that hold records (all from `kept_from` on but `markers`; below it,
    retention deleted them); the seeks asked for."""

    def __init__(self, markers: set[int] | None = None, kept_from: int = 0) -> None:
        self.markers = markers or set()
        self.kept_from = kept_from
        self.rewinds: list[tuple[tuple[str, int], int]] = []
        self.failing = False
        self.start_failing = False

    async def first_record(self, tp: tuple[str, int], offset: int, end: int) -> int | None:
        if self.failing:
            raise ConnectionError("kafka unreachable")
        held = range(max(offset, self.kept_from), end)
        return next((o for o in held if o not in self.markers), None)

    async def rewind(self, tp: tuple[str, int], offset: int) -> None:
        self.rewinds.append((tp, offset))

    async def start(self, tp: tuple[str, int]) -> int:
        if self.failing or self.start_failing:
            raise ConnectionError("kafka unreachable")
        return self.kept_from


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def order(
    log: FakeLog,
    start: int | None = 0,
    learn: Callable[[], Awaitable[None]] | None = None,
    metrics: WorkerMetrics | None = None,
) -> tuple[PartitionOrder, DurableOffsets, Clock]:
    ledger = DurableOffsets()
    ledger.assign([TP, ("msgs", 1)])
    if start is not None:
        ledger.begin(TP, start)
    ledger.begin(("msgs", 1), 0)
    clock = Clock()
    admit = PartitionOrder(ledger, log, metrics or WorkerMetrics(), learn=learn, clock=clock)
    return admit, ledger, clock


def counted(metrics: WorkerMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(f"dialogue_worker_offsets_{name}_total") or 0.0


async def test_records_in_order_and_repeats_are_all_admitted_in_offset_order() -> None:
    log = FakeLog()
    admit, _, _ = order(log, start=10)
    batch = [rec(o) for o in [7, 8, 10, 11, 12, 9, 11]]  # 7..9: repeats of durable records
    assert await admit.admit(batch) == [rec(o) for o in [7, 8, 9, 10, 11, 12]]
    assert log.rewinds == []


async def test_records_read_again_behind_ones_buffered_before_the_seek_are_admitted() -> None:
    log = FakeLog()
    admit, _, _ = order(log, start=12)
    batch = [rec(o) for o in [16, 17, 12, 13, 14, 15]]  # after a seek back to 12
    assert await admit.admit(batch) == [rec(o) for o in range(12, 18)]
    assert log.rewinds == []


async def test_records_of_a_partition_no_longer_owned_are_left_to_its_new_owner() -> None:
    log = FakeLog()
    admit, ledger, _ = order(log, start=0)
    ledger.revoke([TP])
    other = rec(0, partition=1)
    assert await admit.admit([rec(0), rec(1), other]) == [other]


async def test_a_partition_just_assigned_learns_where_it_starts_before_writing() -> None:
    log = FakeLog()
    ledger_box: list[DurableOffsets] = []

    async def learn() -> None:
        ledger_box[0].begin(TP, 40)  # what the committer reads from Kafka

    admit, ledger, _ = order(log, start=None, learn=learn)
    ledger_box.append(ledger)
    assert await admit.admit([rec(45), rec(46)]) == []  # 40..44 were skipped
    assert log.rewinds == [(TP, 40)]


async def test_a_partition_revoked_while_its_start_is_read_is_left_to_its_new_owner() -> None:
    log = FakeLog()
    ledger_box: list[DurableOffsets] = []

    async def learn() -> None:  # a rebalance lands while the committed offsets are read
        ledger_box[0].revoke([TP])

    admit, ledger, _ = order(log, start=None, learn=learn)
    ledger_box.append(ledger)
    assert await admit.admit([rec(0), rec(1)]) == []
    assert log.rewinds == []


async def test_while_kafka_cannot_say_where_a_partition_starts_its_records_are_held_back() -> None:
    """Found in review: they were written without the order check, so a record handed
    over past a hole (faust was seen dropping records after quick rebalances) took its
    chat's next seq before the records in the hole."""
    log = FakeLog()
    ledger_box: list[DurableOffsets] = []
    answers = [False, True]  # Kafka cannot say, then says 40
    asked: list[float] = []

    async def learn() -> None:
        asked.append(clock_box[0].now)
        if answers.pop(0):
            ledger_box[0].begin(TP, 40)

    admit, ledger, clock = order(log, start=None, learn=learn)
    ledger_box.append(ledger)
    clock_box = [clock]
    other = rec(0, partition=1)  # a partition whose start is known goes on
    assert await admit.admit([rec(45), rec(46), other]) == [other]
    assert log.rewinds == [(TP, 45)]  # read again from the first record handed over
    clock.now += 1  # asked a moment ago: not asked again, still held
    assert await admit.admit([rec(47)]) == []
    assert len(asked) == 1 and log.rewinds == [(TP, 45)]
    clock.now += 5  # asked again: 40 is where it starts, and 40..44 were skipped
    assert await admit.admit([rec(45), rec(46)]) == []
    assert len(asked) == 2 and log.rewinds == [(TP, 45), (TP, 40)]
    batch = [rec(o) for o in range(40, 48)]
    assert await admit.admit(batch) == batch


async def test_a_partition_held_for_its_start_is_read_again_from_its_first_record() -> None:
    """Records buffered after the ones held first (a later batch) do not move the seek
    past them."""
    log = FakeLog()

    async def learn() -> None:  # Kafka never says
        return None

    admit, _, clock = order(log, start=None, learn=learn)
    assert await admit.admit([rec(10), rec(11)]) == []
    assert await admit.admit([rec(12)]) == []
    clock.now += 5
    assert await admit.admit([rec(13)]) == []
    assert log.rewinds == [(TP, 10), (TP, 10)]


async def test_records_after_a_hole_are_held_back_and_the_partition_read_again() -> None:
    log = FakeLog()
    admit, ledger, clock = order(log, start=10)
    other = rec(0, partition=1)  # another partition is not held up
    batch = [rec(10), rec(11), other, rec(14), rec(15)]  # 12 and 13 were skipped

    assert await admit.admit(batch) == [rec(10), rec(11), other]
    assert log.rewinds == [(TP, 12)]
    ledger.mark(TP, [10, 11])
    assert await admit.admit([rec(16)]) == []  # buffered before the seek: still held
    assert log.rewinds == [(TP, 12)]  # sought a moment ago: not again yet
    clock.now += 5
    assert await admit.admit([rec(17)]) == []
    assert log.rewinds == [(TP, 12), (TP, 12)]  # still not there: read again
    assert await admit.admit([rec(o) for o in range(12, 18)]) == [rec(o) for o in range(12, 18)]


async def test_a_hole_without_records_is_marked_done() -> None:
    log = FakeLog(markers={20, 41})  # transaction markers
    admit, ledger, _ = order(log, start=20)
    batch = [rec(o) for o in [*range(21, 41), 42]]

    assert await admit.admit(batch) == batch
    assert log.rewinds == []
    ledger.mark(TP, [r.offset for r in batch])
    assert ledger.through(TP) == 43  # the commit point passes both markers


async def test_offsets_deleted_by_retention_are_passed_and_counted_as_lost() -> None:
    """A worker far behind: retention deleted 10..19 before they were stored, and the
    consumer, reset to the partition's start, hands 22.. over (20..21: markers)."""
    log = FakeLog(markers={20, 21}, kept_from=20)
    metrics = WorkerMetrics()
    admit, ledger, _ = order(log, start=10, metrics=metrics)
    batch = [rec(o) for o in range(22, 30)]

    assert await admit.admit(batch) == batch
    assert log.rewinds == []
    assert counted(metrics, "expired") == 10  # lost: told apart, not as markers
    assert counted(metrics, "skipped") == 2
    ledger.mark(TP, [r.offset for r in batch])
    assert ledger.through(TP) == 30


async def test_a_hole_whose_cause_kafka_cannot_say_is_passed_as_markers() -> None:
    log = FakeLog(markers={20}, kept_from=0)
    log.start_failing = True
    metrics = WorkerMetrics()
    admit, _, _ = order(log, start=20, metrics=metrics)
    assert await admit.admit([rec(21)]) == [rec(21)]
    assert counted(metrics, "expired") == 0
    assert counted(metrics, "skipped") == 1


async def test_when_kafka_cannot_say_the_records_are_held_back() -> None:
    log = FakeLog(markers={5})
    log.failing = True
    admit, _, _ = order(log, start=5)
    assert await admit.admit([rec(6)]) == []
    assert log.rewinds == [(TP, 5)]


async def test_the_persister_stores_nothing_past_a_hole_so_seqs_follow_the_partition() -> None:
    log = FakeLog()
    w = World(partition_log=log)
    await w.persister.persist([rec(0), rec(1), rec(3), rec(4)])  # 2 skipped by the consumer
    assert w.store.seqs(CID) == dict(zip([1, 2], ids(0, 1), strict=True))
    assert w.ledger.through(TP) == 2 and log.rewinds == [(TP, 2)]

    await w.persister.persist([rec(2), rec(3), rec(4)])  # read again from the hole
    assert w.store.seqs(CID) == dict(zip(range(1, 6), ids(0, 1, 2, 3, 4), strict=True))
    assert w.ledger.through(TP) == 5


async def test_mend_passes_offsets_without_records_at_the_end_of_a_partition() -> None:
    log = FakeLog(markers={30})  # the last transaction's marker; the high watermark is 31
    admit, ledger, _ = order(log, start=30)
    assert await admit.mend(TP, 31) is True
    assert ledger.through(TP) == 31
    assert await admit.mend(TP, 31) is False  # nothing left to pass


async def test_mend_counts_a_tail_deleted_by_retention_as_lost() -> None:
    log = FakeLog(kept_from=40)  # every record of 30..39 deleted; 40 is the high watermark
    metrics = WorkerMetrics()
    admit, ledger, _ = order(log, start=30, metrics=metrics)
    assert await admit.mend(TP, 40) is True
    assert ledger.through(TP) == 40
    assert counted(metrics, "expired") == 10
    assert counted(metrics, "skipped") == 0


async def test_mend_leaves_a_partition_whose_next_record_is_there() -> None:
    log = FakeLog()
    admit, ledger, _ = order(log, start=30)
    assert await admit.mend(TP, 40) is False
    assert ledger.through(TP) == 30


async def test_a_complete_batch_out_of_offset_order_is_stored_in_partition_order() -> None:
    """Records buffered before a seek back come ahead of the ones read again: the batch
    is whole, only its order is off, and the seqs still follow the offsets."""
    w = World(partition_log=FakeLog())
    await w.persister.persist([rec(3), rec(4), rec(0), rec(1), rec(2)])
    assert w.store.seqs(CID) == dict(zip(range(1, 6), ids(0, 1, 2, 3, 4), strict=True))
    assert w.ledger.through(TP) == 5
