"""The worker's lines about a partition or a record carry `topic` and `partition` as fields,
and `offset` (the first one, for a range) where offsets are concerned."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from dialogue_worker.domain.records import InboundRecord, Sorted
from dialogue_worker.entrypoints.agent import attach_agent
from dialogue_worker.services.persistence import BatchOutcome, partition_offsets
from dialogue_worker.services.ports import StoredMessage
from tests.unit.test_worker_ordering import FakeLog, order
from tests.unit.test_worker_persistence import CID, NOW, PickyStore, World, rec
from tests.unit.test_worker_rewind import Mender
from tests.unit.test_worker_rewind import world as rewind_world


def _lines(caplog: pytest.LogCaptureFixture, *, containing: str) -> list[logging.LogRecord]:
    lines = [r for r in caplog.records if containing in r.getMessage()]
    assert lines, f"no line containing {containing!r}"
    return lines


def _where(line: logging.LogRecord) -> tuple[object, ...]:
    return tuple(line.__dict__.get(key) for key in ("topic", "partition", "offset"))


async def test_ordering_lines_name_the_partition_and_the_first_offset_of_the_hole(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "dialogue_worker")
    log = FakeLog(markers={3, 4})
    admit, _, _ = order(log, start=2)
    await admit.admit([rec(2), rec(5)])  # 3..4 hold no record: marked done
    assert [_where(line) for line in _lines(caplog, containing="hold no record")] == [
        ("msgs", 0, 3)
    ]

    log.failing = True
    await admit.admit([rec(9)])  # Kafka does not say what 2..8 hold (2 not yet durable)
    assert _where(_lines(caplog, containing="could not look into")[0]) == ("msgs", 0, 2)
    assert _where(_lines(caplog, containing="held back")[0]) == ("msgs", 0, 2)

    unknown, _, _ = order(FakeLog(), start=None)
    await unknown.admit([rec(0)])
    line = _lines(caplog, containing="where the partition starts")[0]
    assert _where(line) == ("msgs", 0, 0)  # held back, read again from offset 0


async def test_records_lost_to_retention_are_an_error_naming_the_partition_and_offsets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "dialogue_worker")
    admit, _, _ = order(FakeLog(markers={7}, kept_from=7), start=3)
    await admit.admit([rec(8)])  # 3..6 deleted before they were stored, 7 a marker
    lost = _lines(caplog, containing="deleted by Kafka")
    assert [(line.levelno, _where(line)) for line in lost] == [(logging.ERROR, ("msgs", 0, 3))]
    assert "offsets 3..6 " in lost[0].getMessage()
    markers = _lines(caplog, containing="hold no record")
    assert [(line.levelno, _where(line)) for line in markers] == [(logging.INFO, ("msgs", 0, 7))]


async def test_a_failed_seek_back_names_the_partition_and_offset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Unseekable(FakeLog):
        async def rewind(self, tp: tuple[str, int], offset: int) -> None:
            raise ConnectionError("consumer gone")

    caplog.set_level(logging.INFO, "dialogue_worker")
    admit, _, _ = order(Unseekable(), start=0)
    await admit.admit([rec(4)])
    assert _where(_lines(caplog, containing="could not seek back")[0]) == ("msgs", 0, 0)


async def test_rewind_lines_name_the_stuck_partition_and_offset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "dialogue_worker")
    mender = Mender()
    mender.error = ConnectionError("kafka unreachable")
    rewinder, _, _, _, clock = rewind_world(mender)
    await rewinder.run_once()
    clock.now += 31
    await rewinder.run_once()
    assert _where(_lines(caplog, containing="could not look for records")[0]) == ("msgs", 0, 94)
    assert _where(_lines(caplog, containing="rewound a stuck partition")[0]) == ("msgs", 0, 94)


async def test_halving_logs_one_line_per_partition_with_its_first_offset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "dialogue_worker")
    w = World(PickyStore())
    await w.persister.persist([rec(i, text="poison" if i == 5 else f"m{i}") for i in range(8)])
    lines = _lines(caplog, containing="halving")
    assert _where(lines[0]) == ("msgs", 0, 0)  # the first halving: offsets 0..7
    assert all(_where(line)[:2] == ("msgs", 0) for line in lines)
    assert _where(_lines(caplog, containing="dead-lettered")[0]) == ("msgs", 0, 5)


async def test_seqs_taken_by_another_writer_name_the_partition_and_first_offset(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "dialogue_worker")
    w = World()
    await w.persister.persist([rec(0)])
    w.store.messages[(CID, 2)] = StoredMessage(CID, 2, f"{100:024x}", 1, "theirs", NOW, 1.0, 0, 1)
    await w.persister.persist([rec(60), rec(61)])
    line = _lines(caplog, containing="seqs taken by another writer")[0]
    assert _where(line) == ("msgs", 0, 60)
    assert CID in line.getMessage() and "60..61" in line.getMessage()


def test_partition_offsets_groups_offsets_per_partition_in_order() -> None:
    records = [rec(5), rec(3, partition=1), rec(4), rec(9, partition=1)]
    assert partition_offsets(records) == {("msgs", 0): [5, 4], ("msgs", 1): [3, 9]}


# --- the agent: one debug line per partition of a persisted batch ---------------------


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Any = ()


@dataclass
class _Event:
    message: _Message


class _Stream:
    def __init__(self, batches: list[list[_Event]]) -> None:
        self._batches = batches

    async def noack_take(self, size: int, within: float) -> AsyncIterator[list[_Event]]:
        for batch in self._batches:
            yield batch


class _App:
    def __init__(self) -> None:
        self.agent_fn: Any = None

    def agent(self, topic: Any, name: str, concurrency: int) -> Any:
        def register(fn: Any) -> Any:
            self.agent_fn = fn
            return fn

        return register


class _Persister:
    async def sort(self, records: list[InboundRecord]) -> Sorted:
        return Sorted()

    async def persist(self, records: list[InboundRecord], sorted_batch: Sorted) -> BatchOutcome:
        return BatchOutcome(stored=len(records), duplicates=0, dead_lettered=0)


async def test_the_agent_logs_each_partition_of_a_persisted_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "dialogue_worker.entrypoints.agent")
    app = _App()
    attach_agent(app, "msgs", _Persister(), batch_size=10, within=1.0)  # type: ignore[arg-type]
    offsets = [(0, 7), (1, 3), (0, 8), (1, 4), (0, 9)]
    events = [_Event(_Message("msgs", p, o, None, b"{}")) for p, o in offsets]
    await app.agent_fn(_Stream([events]))

    lines = _lines(caplog, containing="batch persisted")
    assert sorted(_where(line) for line in lines) == [("msgs", 0, 7), ("msgs", 1, 3)]
    assert sorted(line.getMessage() for line in lines) == [
        "batch persisted: offsets 3..4",
        "batch persisted: offsets 7..9",
    ]
    assert all(line.__dict__["batch"]["records"] == 5 for line in lines)
