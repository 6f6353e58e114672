"""Fetched records whose header keys are not UTF-8, and batches that cannot be
decompressed within bounds, reach the consumer instead of stopping it.

Kafka's protocol calls a header key a string, but nothing checks it: a producer that
writes bytes (sarama, franz-go, a hand-rolled client) can put any bytes there. aiokafka
decodes header keys strictly, in its C record parser and in its Python one, so every
fetch of such a partition raised UnicodeDecodeError out of the consumer: the faust app
crashed, the worker exited, and the partition moved on to the next worker, which
crashed on the same record (found in review, 2026-12-02).

`install()` (the worker at start, and the gateway for its events feed) gives aiokafka's
fetcher `TolerantRecords` in place of its `MemoryRecords`:
the same batches, iterated by aiokafka's parser until a record's header key fails to
decode; from there the batch is read by `lenient_records`, this module's reader of the
record format v2, which decodes header keys with replacement characters (U+FFFD). Key,
value and header values are bytes either way, so the record is what its producer wrote
except for those keys, and the worker stores or dead-letters it like any other (a
dead letter copies its headers with the replaced keys).

A compressed batch is decompressed whole before its first record is read, by aiokafka,
with no bound: found in review, a 32 KB zstd batch an outside producer wrote became 1 GB
in the worker (and a 1 MiB one, the broker's default limit, would be ~30 GB), in every
worker that took the partition in turn, and in every gateway for the events topic.
`install()` also gives aiokafka (and `lenient_records`) decoders that stop at
`BATCH_MAX_BYTES`. A batch that does not decompress within it, or not at all (a corrupt
payload, which also stopped the partition), is read as one record per offset it covers:
no key, no value, and an UNREADABLE_HEADER saying why. The worker dead-letters them
(`invalid`, with that reason) and goes on; the events feed skips them.
"""

from __future__ import annotations

import gzip
import io
import mmap
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiokafka.consumer.fetcher as fetcher
import aiokafka.record._crecords.default_records as c_default_records
import aiokafka.record.default_records as py_default_records
import cramjam
from aiokafka import codec
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import decode_varint

from contracts.records import UNREADABLE_HEADER

#: The most bytes a record batch may decompress to. A producer's batch holds up to its
#: batch.size (16 KiB for Java, 1 MB for librdkafka) before compression, and the topic's
#: records are at most 64 KiB: 64 MiB leaves room for any producer's settings.
BATCH_MAX_BYTES = 64 * 1024 * 1024


class UnreadableBatch(ValueError):
    """A compressed batch that does not decompress within BATCH_MAX_BYTES, or at all."""


def _into(decompress_into: Callable[[bytes, Any], int], name: str) -> Callable[[Any], bytes]:
    """A decoder writing into a mapping of BATCH_MAX_BYTES (its pages are taken only as
    they are written), failing past it."""

    def decode(payload: Any) -> bytes:
        with mmap.mmap(-1, BATCH_MAX_BYTES) as out:
            try:
                size = decompress_into(bytes(payload), out)
            except Exception as exc:  # a stranger's bytes: whatever fails, unreadable
                raise UnreadableBatch(f"{name}: {exc} (at most {BATCH_MAX_BYTES} bytes)") from None
            return out[:size]

    return decode


def gzip_decode(payload: Any) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(bytes(payload)), mode="r") as gz:
            data = gz.read(BATCH_MAX_BYTES + 1)
    except Exception as exc:  # BadGzipFile, EOFError, zlib.error: a stranger's bytes
        raise UnreadableBatch(f"gzip: {exc}") from None
    if len(data) > BATCH_MAX_BYTES:
        raise UnreadableBatch(f"gzip: decompresses past {BATCH_MAX_BYTES} bytes")
    return data


def snappy_decode(payload: Any) -> bytes:
    """What aiokafka's decoder gives (the xerial framing's blocks, or one raw block, each
    decompressed), once every block's declared length (snappy writes it first) adds up to
    at most BATCH_MAX_BYTES: cramjam allocates what a block declares. The blocks are
    split once, here, and decompressed from that split."""
    data = bytes(payload)
    blocks = [data]
    if codec._detect_xerial_stream(data):
        blocks, cursor = [], 16
        while cursor < len(data):
            if cursor + 4 > len(data):
                raise UnreadableBatch("snappy: a block's length is cut short")
            (size,) = struct.unpack_from("!i", data, cursor)
            if size < 0 or cursor + 4 + size > len(data):
                raise UnreadableBatch("snappy: a block runs past the batch")
            blocks.append(data[cursor + 4 : cursor + 4 + size])
            cursor += 4 + size
    try:
        declared = sum(int(cramjam.snappy.decompress_raw_len(b)) for b in blocks)
    except Exception as exc:  # a stranger's bytes: whatever fails, the batch is unreadable
        raise UnreadableBatch(f"snappy: {exc}") from None
    if declared > BATCH_MAX_BYTES:
        raise UnreadableBatch(f"snappy: declares {declared} bytes (at most {BATCH_MAX_BYTES})")
    try:
        return b"".join(bytes(cramjam.snappy.decompress_raw(b)) for b in blocks)
    except Exception as exc:
        raise UnreadableBatch(f"snappy: {exc}") from None


lz4_decode = _into(cramjam.lz4.decompress_into, "lz4")
zstd_decode = _into(cramjam.zstd.decompress_into, "zstd")
BOUNDED = {
    "gzip_decode": gzip_decode,
    "snappy_decode": snappy_decode,
    "lz4_decode": lz4_decode,
    "zstd_decode": zstd_decode,
}

# Record batch v2 (Kafka's "message format v2"): the header's fixed fields, big-endian.
_HEADER = struct.Struct(">qiibIhiqqqhii")  # baseOffset .. recordCount: 61 bytes
_LENGTH_END = 12  # baseOffset (8) + batchLength (4): a batch is 12 + batchLength bytes
_MAGIC_AT = 16
_LOG_APPEND_TIME = 0x08
_DECODERS: dict[int, Callable[[bytes], bytes]] = {
    1: gzip_decode,
    2: snappy_decode,
    3: lz4_decode,
    4: zstd_decode,
}


@dataclass(frozen=True)
class LenientRecord:
    """What aiokafka's fetcher reads of a record (its `_consumer_record`)."""

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    checksum: None = None


def lenient_records(batch: bytes, skip: int = 0) -> Iterator[LenientRecord]:
    """The records of one v2 batch after the first `skip`, header keys decoded with
    replacement characters. Raises ValueError for anything but a whole v2 batch."""
    if len(batch) < _HEADER.size or batch[_MAGIC_AT] != 2:
        raise ValueError("not a record batch of format v2")
    (base, length, _, _, _, attributes, _, first_ts, max_ts, _, _, _, count) = _HEADER.unpack_from(
        batch
    )
    if _LENGTH_END + length != len(batch):
        raise ValueError("batch length does not match")
    body = bytes(batch[_HEADER.size :])
    compression = attributes & 0x07
    if compression:
        decode = _DECODERS.get(compression)
        if decode is None:
            raise ValueError(f"unknown compression {compression}")
        body = decode(body)
    log_append = bool(attributes & _LOG_APPEND_TIME)
    pos = 0
    for index in range(count):
        size, pos = decode_varint(body, pos)
        end = pos + size
        pos += 1  # the record's attributes: unused
        ts_delta, pos = decode_varint(body, pos)
        offset_delta, pos = decode_varint(body, pos)
        key, pos = _bytes(body, pos)
        value, pos = _bytes(body, pos)
        headers: list[tuple[str, bytes | None]] = []
        count_headers, pos = decode_varint(body, pos)
        for _ in range(count_headers):
            name, pos = _bytes(body, pos)
            header_value, pos = _bytes(body, pos)
            headers.append(((name or b"").decode("utf-8", "replace"), header_value))
        if pos != end:
            raise ValueError("record length does not match its fields")
        if index >= skip:
            yield LenientRecord(
                offset=base + offset_delta,
                timestamp=max_ts if log_append else first_ts + ts_delta,
                timestamp_type=int(log_append),
                key=key,
                value=value,
                headers=headers,
            )


def unreadable_records(batch: bytes, why: str, after: int = -1) -> Iterator[LenientRecord]:
    """One record per offset of a batch whose records cannot be read, from the one past
    `after` (the last record read of it, if any): no key, no value, an UNREADABLE_HEADER
    saying why (the batch's header is read, not its records)."""
    (base, _, _, _, _, attributes, last_delta, first_ts, max_ts, *_) = _HEADER.unpack_from(batch)
    log_append = bool(attributes & _LOG_APPEND_TIME)
    reason = f"record batch of offsets {base}..{base + last_delta} is unreadable: {why}"
    for offset in range(max(base, after + 1), base + last_delta + 1):
        yield LenientRecord(
            offset=offset,
            timestamp=max_ts if log_append else first_ts,
            timestamp_type=int(log_append),
            key=None,
            value=None,
            headers=[(UNREADABLE_HEADER, reason.encode())],
        )


def _bytes(body: bytes, pos: int) -> tuple[bytes | None, int]:
    """A varint length (-1: null) and that many bytes."""
    size, pos = decode_varint(body, pos)
    if size < 0:
        return None, pos
    if pos + size > len(body):
        raise ValueError("field runs past the batch")
    return body[pos : pos + size], pos + size


class TolerantBatch:
    """One of aiokafka's batches; its records from aiokafka's parser until one fails to
    decode, then from `lenient_records`."""

    def __init__(self, batch: Any, raw: bytes, start: int, end: int) -> None:
        self._batch = batch
        self._raw = raw  # the whole message set: sliced only for a batch that needs it
        self._span = start, end
        self._records: Iterator[Any] | None = None

    def __getattr__(self, name: str) -> Any:  # base_offset, is_control_batch, ...
        return getattr(self._batch, name)

    def __iter__(self) -> TolerantBatch:
        return self

    def __next__(self) -> Any:
        if self._records is None:
            self._records = self._read()
        return next(self._records)

    def _read(self) -> Iterator[Any]:
        taken, last = 0, -1  # records read, and the offset of the last one
        records: Iterator[Any] | None = None
        start, end = self._span
        while True:
            try:
                if records is None:
                    records = iter(self._batch)  # aiokafka decompresses the batch here
                record = next(records)
            except StopIteration:
                return
            except UnicodeDecodeError:  # a header key that is not UTF-8
                lenient = lenient_records(self._raw[start:end], skip=taken)
                while True:
                    try:
                        record = next(lenient)
                    except StopIteration:
                        return
                    except ValueError as exc:  # malformed past the key as well
                        yield from unreadable_records(self._raw[start:end], str(exc), last)
                        return
                    last = record.offset
                    yield record
            except Exception as exc:  # a stranger's bytes must not stop the consumer
                # It did not decompress within bounds (UnreadableBatch), or a record of it
                # is malformed (aiokafka's CorruptRecordException): the rest is unreadable.
                yield from unreadable_records(self._raw[start:end], _said(exc), last)
                return
            taken, last = taken + 1, record.offset
            yield record


def _said(exc: Exception) -> str:
    return str(exc) if isinstance(exc, UnreadableBatch) else f"{type(exc).__name__}: {exc}"


class TolerantRecords:
    """aiokafka's MemoryRecords over a fetched message set, whose batches keep their
    bytes (for `lenient_records`)."""

    def __init__(self, raw: bytes) -> None:
        self._records = MemoryRecords(raw)
        self._raw = raw
        self._pos = 0

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        return bool(self._records.has_next())

    def next_batch(self) -> TolerantBatch | None:
        batch = self._records.next_batch()
        if batch is None:
            return None
        start = self._pos
        (length,) = struct.unpack_from(">i", self._raw, start + 8)
        self._pos = start + _LENGTH_END + length
        return TolerantBatch(batch, self._raw, start, self._pos)


def install() -> None:
    """Make aiokafka's fetcher (every consumer of this process) read `TolerantRecords`,
    and its record batches (C and Python) decompress with the bounded decoders."""
    if getattr(fetcher, "MemoryRecords", None) not in (MemoryRecords, TolerantRecords):
        raise RuntimeError("aiokafka's fetcher changed: check platform_common/kafka_records.py")
    for module in (c_default_records, py_default_records):
        for name, decode in BOUNDED.items():
            if not callable(getattr(module, name, None)):
                raise RuntimeError(
                    f"aiokafka's record batch has no {name}: check platform_common/kafka_records.py"
                )
            setattr(module, name, decode)
    fetcher.MemoryRecords = TolerantRecords
