"""platform_common.kafka_records: record batches read as aiokafka reads them,
except header keys that are not UTF-8, which no longer stop the consumer."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from hypothesis import given
from hypothesis import strategies as st

from contracts.records import UNREADABLE_HEADER
from platform_common import kafka_records
from platform_common.kafka_records import TolerantRecords, lenient_records

GZIP = 1
#: Every codec a producer may compress a batch with (Kafka's attribute bits).
CODECS = {"gzip": GZIP, "snappy": 2, "lz4": 3, "zstd": 4}
MARK = "\x01\x02\x03\x04"  # a header key, overwritten with bytes that are not UTF-8

optional_bytes = st.none() | st.binary(max_size=40)
records = st.lists(
    st.tuples(
        st.integers(0, 10**6),  # timestamp
        optional_bytes,  # key
        optional_bytes,  # value
        st.lists(st.tuples(st.text(max_size=10), optional_bytes), max_size=3),
    ),
    min_size=1,
    max_size=20,
)


def build(rows: list[Any], compression: int = 0, base: int = 0) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 24,
    )
    for delta, (timestamp, key, value, headers) in enumerate(rows):
        builder.append(delta, timestamp=timestamp, key=key, value=value, headers=headers)
    raw = bytearray(builder.build())
    raw[0:8] = base.to_bytes(8, "big")  # the broker sets the base offset
    return bytes(raw)


def fields(record: Any) -> tuple[Any, ...]:
    headers = [(k, v) for k, v in record.headers]
    return (
        record.offset,
        record.timestamp,
        record.timestamp_type,
        record.key,
        record.value,
        headers,
    )


def aiokafka_reads(raw: bytes) -> list[tuple[Any, ...]]:
    found = []
    batches = MemoryRecords(raw)
    while batches.has_next():
        found += [fields(r) for r in batches.next_batch()]
    return found


@given(records, st.sampled_from([0, *CODECS.values()]), st.integers(0, 2**40), st.integers(0, 25))
def test_a_batch_reads_as_aiokafka_reads_it(
    rows: list[Any], compression: int, base: int, skip: int
) -> None:
    raw = build(rows, compression, base)
    expected = aiokafka_reads(raw)
    assert [fields(r) for r in lenient_records(raw)] == expected
    assert [fields(r) for r in lenient_records(raw, skip=skip)] == expected[skip:]


@given(st.lists(records, min_size=1, max_size=4))
def test_tolerant_records_give_aiokafka_batches_unchanged(batches: list[Any]) -> None:
    raw = b"".join(build(rows, base=i * 100) for i, rows in enumerate(batches))
    tolerant = TolerantRecords(raw)
    found = []
    while tolerant.has_next():
        batch = tolerant.next_batch()
        assert batch is not None and batch.magic == 2  # attributes come from aiokafka's
        found += [fields(r) for r in batch]
    assert found == aiokafka_reads(raw)
    assert tolerant.size_in_bytes() == len(raw)


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_a_batch_compressed_with_any_codec_is_read(codec: str) -> None:
    """A producer outside the project may compress, and the broker keeps its codec:
    without cramjam (aiokafka's lz4, snappy and zstd extras) reading the batch raises,
    and every worker that owns its partition exits in turn."""
    rows = [(i, f"k{i}".encode(), f"value {i}".encode() * 20, []) for i in range(5)]
    tolerant = TolerantRecords(build(rows, CODECS[codec], base=7))
    batch = tolerant.next_batch()
    assert batch is not None
    assert [(r.offset, r.key, r.value) for r in batch] == [
        (7 + i, key, value) for i, (_, key, value, _) in enumerate(rows)
    ]


def poisoned(compression: int = 0) -> bytes:
    """Three records, the second with a header key that is not UTF-8."""
    rows = [
        (1, b"k1", b"first", [("a", b"1")]),
        (2, b"k2", b"second", [(MARK, b"2"), ("b", None)]),
        (3, b"k3", b"third", []),
    ]
    raw = build(rows, compression, base=40)
    at = raw.index(MARK.encode())
    return raw[:at] + b"\xff\xfe\xc3\x28" + raw[at + len(MARK) :]


def test_aiokafka_cannot_read_a_header_key_that_is_not_utf8() -> None:
    """Why the module exists: the record stops aiokafka's parser (and the consumer)."""
    with pytest.raises(UnicodeDecodeError):
        aiokafka_reads(poisoned())


def test_a_header_key_that_is_not_utf8_is_read_with_replacement_characters() -> None:
    tolerant = TolerantRecords(poisoned())
    batch = tolerant.next_batch()
    assert batch is not None
    found = [fields(r) for r in batch]
    assert [f[0] for f in found] == [40, 41, 42]
    assert [f[4] for f in found] == [b"first", b"second", b"third"]
    assert found[1][5] == [("\ufffd\ufffd\ufffd(", b"2"), ("b", None)]
    assert found[0][5] == [("a", b"1")] and not tolerant.has_next()


@pytest.mark.parametrize("cut", [1, 30, 61, -1])
def test_a_batch_that_is_not_whole_is_refused(cut: int) -> None:
    raw = build([(1, b"k", b"v", [])])
    with pytest.raises(ValueError):
        list(lenient_records(raw[:cut] if cut > 0 else raw + b"\x00"))


@given(st.binary(min_size=1, max_size=16))
def test_any_header_key_bytes_are_read_as_replaced_text_and_nothing_else_changes(
    name: bytes,
) -> None:
    """Whatever bytes a producer puts in a header key (UTF-8 or not), the records read
    as aiokafka reads them with the key decoded with replacement characters."""
    mark = "Q" * len(name)  # a placeholder of the same length, then its bytes replaced
    rows = [
        (1, b"k1", b"first", [("a", b"1")]),
        (2, b"k2", b"second", [("b", None), (mark, b"2")]),
        (3, None, b"third", []),
    ]
    plain = build(rows, base=7)
    needle = bytes([2 * len(name)]) + mark.encode()  # the key's varint length, then it
    assert plain.count(needle) == 1
    at = plain.index(needle) + 1
    raw = plain[:at] + name + plain[at + len(name) :]
    expected = aiokafka_reads(plain)
    expected[1][5][1] = (name.decode("utf-8", "replace"), b"2")
    assert [fields(r) for r in lenient_records(raw)] == expected
    tolerant = TolerantRecords(raw)  # the same through the fetcher's reader
    batch = tolerant.next_batch()
    assert batch is not None and [fields(r) for r in batch] == expected


# --- batches that do not decompress within bounds, or at all ------------------------------


@pytest.fixture
def small_bound(monkeypatch: pytest.MonkeyPatch) -> int:
    """A bound of 64 KiB (64 MiB in service), and the bounded decoders installed in
    aiokafka's parsers, as the worker and the gateway install them at start."""
    monkeypatch.setattr(kafka_records, "BATCH_MAX_BYTES", 64 * 1024)
    kafka_records.install()
    return 64 * 1024


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_a_batch_decompressing_past_the_bound_is_read_as_unreadable_records(
    codec: str, small_bound: int
) -> None:
    """Found in review: a 32 KB zstd batch decompressed to 1 GB in the consumer, before
    its first record was read; any outside producer could write one."""
    rows = [(5, b"k", b"\0" * small_bound, []) for _ in range(3)]  # 3 x the bound
    raw = build(rows, CODECS[codec], base=70)
    assert len(raw) < small_bound  # it compresses to little
    tolerant = TolerantRecords(raw)
    batch = tolerant.next_batch()
    assert batch is not None
    found = [fields(r) for r in batch]
    assert [f[0] for f in found] == [70, 71, 72]  # one per offset the batch covers
    for _, _, _, key, value, headers in found:
        assert (key, value) == (None, None)
        [(name, why)] = headers
        assert name == UNREADABLE_HEADER and codec.encode() in why and b"70..72" in why


def test_a_batch_within_the_bound_reads_as_before(small_bound: int) -> None:
    rows = [(5, b"k", b"x" * (small_bound // 4), []) for _ in range(3)]
    for compression in CODECS.values():
        raw = build(rows, compression, base=3)
        batch = TolerantRecords(raw).next_batch()
        assert batch is not None
        assert [(r.offset, r.value) for r in batch] == [(3 + i, rows[i][2]) for i in range(3)]


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_a_corrupt_compressed_batch_is_read_as_unreadable_records(
    codec: str, small_bound: int
) -> None:
    """A payload that does not decompress at all stopped the consumer the same way."""
    rows = [(5, b"k", b"value", []) for _ in range(2)]
    raw = bytearray(build(rows, CODECS[codec], base=9))
    raw[61:] = (b"\x00garbage, not a compressed payload" * 10)[: len(raw) - 61]
    batch = TolerantRecords(bytes(raw)).next_batch()
    assert batch is not None
    found = [fields(r) for r in batch]
    assert [f[0] for f in found] == [9, 10]
    assert all(f[5][0][0] == UNREADABLE_HEADER for f in found)


@given(st.integers(0, 10**6), st.integers(1, 255), st.sampled_from(sorted(CODECS)))
def test_any_damage_inside_a_compressed_payload_reads_or_is_unreadable_records(
    at: int, flip: int, codec: str
) -> None:
    """A byte changed anywhere past the batch header (the broker checks CRCs, but a
    batch is a stranger's bytes): found in review, a flip inside a gzip stream raised
    zlib.error and trailing bytes after snappy's blocks raised struct.error, and a record
    damaged once decompressed raised CorruptRecordException, all out of the consumer.
    The batch reads to its end: records, then unreadable records for the rest."""
    kafka_records.install()
    rows = [(5, b"k", b"value %d" % i * 30, []) for i in range(3)]
    raw = bytearray(build(rows, CODECS[codec], base=9))
    raw[61 + at % (len(raw) - 61)] ^= flip
    batch = TolerantRecords(bytes(raw)).next_batch()
    assert batch is not None
    found = [fields(r) for r in batch]  # never raises: the consumer goes on
    unreadable = [f[0] for f in found if f[5] and f[5][0][0] == UNREADABLE_HEADER]
    read = [f[0] for f in found if f[0] not in unreadable]
    # Damage may also read as other records (the CRC the broker checks is not checked
    # here); what is unreadable covers the batch's offsets after the last one read.
    assert unreadable == list(range(max([8, *read]) + 1, 12))[: len(unreadable)]
    assert all(9 <= o <= 11 for o in unreadable)


def test_snappy_with_bytes_after_its_last_block_is_unreadable(small_bound: int) -> None:
    rows = [(5, b"k", b"value", [])]
    raw = build(rows, CODECS["snappy"], base=3)
    tail = raw + b"\x00\x01"  # two bytes after the last block
    length = int.from_bytes(tail[8:12], "big") + 2
    damaged = tail[:8] + length.to_bytes(4, "big") + tail[12:]
    batch = TolerantRecords(damaged).next_batch()
    assert batch is not None
    [record] = [fields(r) for r in batch]
    assert record[5][0][0] == UNREADABLE_HEADER and b"snappy" in record[5][0][1]
