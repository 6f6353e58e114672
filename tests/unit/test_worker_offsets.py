"""DurableOffsets: what the worker commits never passes an offset that was not made durable."""

from __future__ import annotations

import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from dialogue_worker.domain.offsets import DurableOffsets

TP = ("msgs", 3)


def ledger(start: int | None = 0) -> DurableOffsets:
    offsets = DurableOffsets()
    offsets.assign([TP])
    if start is not None:
        offsets.begin(TP, start)
    return offsets


def test_batches_in_order_move_the_commit_point() -> None:
    offsets = ledger(100)
    offsets.mark(TP, range(100, 150))
    offsets.mark(TP, range(150, 151))
    assert offsets.through(TP) == 151


def test_a_skipped_record_holds_the_commit_point_until_it_is_durable() -> None:
    offsets = ledger(100)
    offsets.mark(TP, range(100, 120))
    offsets.mark(TP, range(121, 300))  # 120 was never handed over
    assert offsets.through(TP) == 120
    offsets.mark(TP, [120])  # redelivered after a seek
    assert offsets.through(TP) == 300


def test_repeats_and_records_below_the_start_change_nothing() -> None:
    offsets = ledger(100)
    offsets.mark(TP, [5, 99, 100, 100, 101])
    assert offsets.through(TP) == 102


def test_marks_before_the_start_is_known_count_once_it_is() -> None:
    offsets = ledger(None)
    offsets.mark(TP, range(40, 60))
    assert offsets.through(TP) is None and offsets.unknown() == [TP]
    offsets.begin(TP, 40)
    assert offsets.through(TP) == 60 and offsets.unknown() == []


def test_an_empty_stretch_is_passed_only_once_marked_done() -> None:
    offsets = ledger(10)
    offsets.mark(TP, range(10, 20))
    offsets.mark(TP, range(21, 30))  # 20: a transaction marker
    assert offsets.through(TP) == 20
    offsets.mark_range(TP, 20, 21)
    assert offsets.through(TP) == 30
    offsets.mark_range(TP, 30, 5_000_000)  # retention removed a long stretch: no list of it
    assert offsets.through(TP) == 5_000_000


def test_a_revoked_partition_ignores_late_marks_and_starts_afresh() -> None:
    offsets = ledger(0)
    offsets.mark(TP, range(0, 10))
    offsets.revoke([TP])
    offsets.mark(TP, range(10, 20))  # the batch in hand finished after the revoke
    assert offsets.through(TP) is None and offsets.assigned() == []
    offsets.assign([TP])
    offsets.begin(TP, 15)  # another worker committed meanwhile
    assert offsets.through(TP) == 15


@given(
    size=st.integers(1, 300),
    start=st.integers(0, 50),
    holes=st.sets(st.integers(0, 350), max_size=20),
    cuts=st.lists(st.integers(0, 350), max_size=30),
    order=st.randoms(use_true_random=False),
)
def test_the_commit_point_is_the_first_offset_not_durable(
    size: int, start: int, holes: set[int], cuts: list[int], order: random.Random
) -> None:
    """Whatever batches and order the records come in, with whatever records missing:
    through() is exactly the first offset from the start that was not marked."""
    durable = [o for o in range(start, start + size) if o not in holes]
    bounds = sorted({0, len(durable), *(c % (len(durable) + 1) for c in cuts)})
    batches = [durable[a:b] for a, b in itertools.pairwise(bounds)]
    order.shuffle(batches)
    offsets = ledger(start)
    for batch in batches:
        offsets.mark(TP, batch)
        through = offsets.through(TP)
        assert through is not None
        assert all(o in set(durable) for o in range(start, through))  # never past a hole
    expected = start
    while expected in set(durable):
        expected += 1
    assert offsets.through(TP) == expected
