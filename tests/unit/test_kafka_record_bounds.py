"""Property: whatever key, headers and timestamp a producer puts on a record of the message
topic, the intake (`agent.inbound`, then `BatchPersister.persist`) reads it without an
exception, and they change nothing of its fate. The rule, as docs/worker.md ("Producing
a record") and docs/decisions.md state it: the key is not checked, only the partition;
a valid record on its chat's partition is stored (an unknown chat dead-lettered as
`unknown_chat`), one on another partition is forwarded to its chat (unless it is a
forwarded copy already, carrying `x-forwarded-from`: then it is dead-lettered as
`wrong_partition`, not sent round again), and an invalid one is dead-lettered as
`invalid`; none is dead-lettered for its key. Every record
is made durable, and every dead letter fits in one request with the record's headers
and timestamp as they came."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from aiokafka.partitioner import murmur2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialogue_worker.adapters.outbox import (
    DLQ_PREFIX,
    HEADERS_DROPPED,
    KEY_TRUNCATED,
    KIND,
    MAX_RECORD,
    PREVIOUS,
    SOURCE_TIMESTAMP,
    dead_letter_copy,
    record_size,
)
from dialogue_worker.adapters.topics import partitioner
from dialogue_worker.domain.offsets import DurableOffsets
from dialogue_worker.domain.records import InboundRecord, Rejected, RejectKind
from dialogue_worker.entrypoints.agent import inbound
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.chat_book import ChatBook
from dialogue_worker.services.health import WorkerHealth
from dialogue_worker.services.persistence import BatchPersister
from tests.support.hostile import BROKER_LIMIT, base, encode, valid_texts
from tests.support.worker_fakes import MemoryOutbox, MemoryStore

TOPIC = "dialogue.messages"
PARTITIONS = 12
CID = "65f0c0ffee0000000000beef"
OTHER = "65f0c0ffee0000000000cafe"
UNKNOWN = "65f0c0ffee0000000000dead"  # a well-formed chat id no chat has
UID = 7
#: Kafka's timestamps are signed 64-bit milliseconds; -1 is "none" (older clients).
INT64 = (-(2**63), 2**63 - 1)
#: The last millisecond of the year 9999: every time a calendar writes.
LAST_CALENDAR_MS = 253_402_300_799_999


def chat_partition(cid: str) -> int:
    """Where Kafka's Java client puts a record keyed by the chat id: murmur2 of the key,
    made positive, modulo the partition count."""
    return int(murmur2(cid.encode()) & 0x7FFFFFFF) % PARTITIONS


# --- What a producer can put on a record -------------------------------------------

#: Sizes of a huge key or header value: up to the broker's limit, its edges favoured.
_huge = st.sampled_from([MAX_RECORD - 200, MAX_RECORD, BROKER_LIMIT]) | st.integers(
    60_000, BROKER_LIMIT
)
KEYS = st.one_of(
    st.none(),
    st.sampled_from(
        [
            b"",
            CID.encode(),
            OTHER.encode(),
            UNKNOWN.encode(),
            CID.upper().encode(),
            CID.encode() + b"\n",
            b"\xed\xa0\x80",  # a surrogate's bytes: not UTF-8
            b"\xff\xfe\x00",
        ]
    ),
    st.binary(max_size=40),
    _huge.map(lambda n: b"\xff" * n),  # up to the broker's limit
)
HEADER_NAMES = st.sampled_from(
    ["", "trace", "x-dlq-reason", "x-dlq-kind", "x-forwarded-from", "\ufffd", "tracé", "😀"]
) | st.text(max_size=12)  # a small pool, so names repeat
HEADER_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=24),
    st.sampled_from([b"", b"\xed\xa0\x80"]),
    _huge.map(lambda n: b"h" * n),
)
HEADER_LISTS = st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6)
#: The headers as faust hands them over: none, a list or tuple of pairs, or a mapping.
HEADERS = st.one_of(
    st.none(),
    HEADER_LISTS,
    HEADER_LISTS.map(tuple),
    st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
)
TIMESTAMPS = st.one_of(
    st.none(),
    st.sampled_from([-1, 0, 1, INT64[1], INT64[0], 1_700_000_000_123, LAST_CALENDAR_MS]),
    st.integers(*INT64),
)


@dataclass(frozen=True)
class Spec:
    """One record as a producer wrote it, and the value's cid when it is a valid record."""

    partition: int
    key: bytes | None
    value: bytes | None
    headers: Any
    timestamp: int | None  # milliseconds, as Kafka keeps it
    cid: str | None


def invalid_values() -> st.SearchStrategy[bytes | None]:
    good = encode(base(CID, UID))
    bad = [None, b"", b"}{", good + b"x", good + good, encode(base(CID, UID) | {"uid": 0})]
    return st.sampled_from(bad)


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    key, headers, timestamp = draw(KEYS), draw(HEADERS), draw(TIMESTAMPS)
    cid = draw(st.sampled_from([CID, OTHER, UNKNOWN, None]))
    if cid is None:
        return Spec(
            draw(st.integers(0, PARTITIONS - 1)),
            key,
            draw(invalid_values()),
            headers,
            timestamp,
            None,
        )
    # On its chat's partition half the time (1 in 12 if drawn at random).
    own = chat_partition(cid)
    elsewhere = st.integers(0, PARTITIONS - 1).filter(lambda p: p != own)
    partition = draw(st.just(own) | elsewhere)
    value = encode(base(cid, UID, draw(valid_texts())))
    return Spec(partition, key, value, headers, timestamp, cid)


def expected(spec: Spec) -> tuple[str, str]:
    """The record's fate by the rule (module docstring): what became of it, and the chat
    it was stored in or forwarded to, or the dead letter's kind."""
    if spec.cid is None:
        return "dead-lettered", "invalid"
    if spec.partition != chat_partition(spec.cid):
        if "x-forwarded-from" in _names(spec.headers):  # a copy misplaced again: no loop
            return "dead-lettered", "wrong_partition"
        return "forwarded", spec.cid
    if spec.cid == UNKNOWN:
        return "dead-lettered", "unknown_chat"
    return "stored", spec.cid


def _names(headers: Any) -> list[str]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers)
    return [name for name, _ in headers]


def event(spec: Spec, offset: int) -> SimpleNamespace:
    """The faust event of the record: faust turns Kafka's milliseconds into float seconds."""
    seconds = None if spec.timestamp is None else spec.timestamp / 1000.0
    message = SimpleNamespace(
        topic=TOPIC,
        partition=spec.partition,
        offset=offset,
        key=spec.key,
        value=spec.value,
        headers=spec.headers,
        timestamp=seconds,
    )
    return SimpleNamespace(message=message)


def as_pairs(headers: Any) -> tuple[tuple[str, bytes | None], ...]:
    if headers is None:
        return ()
    return tuple(headers.items() if isinstance(headers, Mapping) else headers)


def check_read(spec: Spec, record: InboundRecord) -> None:
    """The record is read as it came: key, value and headers (order, repeats, null values)
    whole, and its timestamp in milliseconds, none for a negative one (Kafka's -1)."""
    assert (record.key, record.value) == (spec.key, spec.value)
    assert record.headers == as_pairs(spec.headers)
    if spec.timestamp is None or spec.timestamp < 0:
        assert record.timestamp_ms is None
    elif spec.timestamp <= LAST_CALENDAR_MS:
        assert record.timestamp_ms == spec.timestamp
    else:  # faust's float seconds hold every millisecond up to 2**53 only
        assert isinstance(record.timestamp_ms, int) and 0 <= record.timestamp_ms <= INT64[1]


def check_dead_letter(rejected: Rejected) -> None:
    """The copy fits in one request, says the kind and the source's time, holds each x-dlq-*
    header once, keeps the key (or a cut of it, saying so) and the source's headers whole
    (renamed out of the worker's prefix) or drops them all, saying how many."""
    record = rejected.record
    key, value, headers = dead_letter_copy(rejected)
    assert record_size(key, value, headers) <= MAX_RECORD
    names = Counter(name for name, _ in headers if name.startswith(DLQ_PREFIX))
    assert set(names.values()) == {1}
    added = dict(headers)
    assert added[KIND] == rejected.kind.value.encode()
    if record.timestamp_ms is None:
        assert SOURCE_TIMESTAMP not in added
    else:
        assert added[SOURCE_TIMESTAMP] == str(record.timestamp_ms).encode()
    if KEY_TRUNCATED in added:
        assert record.key is not None and key is not None and record.key.startswith(key)
        assert added[KEY_TRUNCATED] == str(len(record.key)).encode()
    else:
        assert key == record.key
    own = [
        (PREVIOUS + name if name.startswith(DLQ_PREFIX) else name, header)
        for name, header in record.headers
    ]
    if HEADERS_DROPPED in added:
        assert own and added[HEADERS_DROPPED] == str(len(own)).encode()
        assert all(name.startswith(DLQ_PREFIX) for name, _ in headers)
    else:
        assert headers[: len(own)] == own


async def never_sleep(delay: float) -> None:
    raise AssertionError(f"a step was retried (pause of {delay} s): nothing here fails")


def persister(store: MemoryStore, outbox: MemoryOutbox, ledger: DurableOffsets) -> BatchPersister:
    """A worker's persister over the fakes, routing chats as the worker does."""
    health = WorkerHealth(store.ping, dict, stall_after=30)
    book = ChatBook(store, 5.0)
    made = BatchPersister(
        store, outbox, book, health, WorkerMetrics(), sleep=never_sleep, ledger=ledger
    )
    made.route(partitioner(PARTITIONS))
    return made


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(specs(), min_size=1, max_size=4))
async def test_key_headers_and_timestamp_change_nothing_of_a_records_fate(
    batch: Sequence[Spec],
) -> None:
    offsets: Counter[int] = Counter()
    records: list[InboundRecord] = []
    for spec in batch:  # each partition's records at offsets 0, 1, 2 ...
        records.append(inbound(event(spec, offsets[spec.partition])))
        offsets[spec.partition] += 1
        check_read(spec, records[-1])
    store, outbox, ledger = MemoryStore(), MemoryOutbox(), DurableOffsets()
    store.add_chat(CID, {UID})
    store.add_chat(OTHER, {UID})
    ledger.assign([(TOPIC, p) for p in offsets])
    for partition in offsets:
        ledger.begin((TOPIC, partition), 0)

    await persister(store, outbox, ledger).persist(records)

    fates: dict[tuple[int, int], list[tuple[str, str]]] = {
        (r.partition, r.offset): [] for r in records
    }
    for m in store.messages.values():
        fates[(m.partition, m.offset)].append(("stored", m.cid))
    for r, cid in outbox.forwarded:
        fates[(r.partition, r.offset)].append(("forwarded", cid))
    for rejected in outbox.dead:
        where = (rejected.record.partition, rejected.record.offset)
        fates[where].append(("dead-lettered", rejected.kind.value))
        assert rejected.reason
        check_dead_letter(rejected)
    assert [fates[(r.partition, r.offset)] for r in records] == [[expected(spec)] for spec in batch]
    for partition, count in offsets.items():  # every record durable: none lost
        assert ledger.through((TOPIC, partition)) == count


def test_each_edge_of_kafkas_timestamps_is_read_and_carried_by_the_dead_letter() -> None:
    """None, Kafka's -1 and the least int64: no time; 0 and 1: as they are; the largest
    int64: itself, carried as read (the property draws all of them too)."""
    for ms, read in [(None, None), (-1, None), (INT64[0], None), (0, 0), (1, 1)]:
        record = inbound(event(Spec(0, b"k", b"{", [("trace", None)], ms, None), 5))
        assert record.timestamp_ms == read
        check_dead_letter(Rejected(record, RejectKind.INVALID, "malformed JSON"))
    latest = inbound(event(Spec(0, b"k", b"{", None, INT64[1], None), 5))
    assert latest.timestamp_ms == INT64[1]  # it came back as 2**63, past any int64
    check_dead_letter(Rejected(latest, RejectKind.INVALID, "malformed JSON"))
