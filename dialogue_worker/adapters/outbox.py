"""What the worker produces to Kafka: dead letters, misplaced records, and events.

One idempotent acks=all producer for all three; `start()` and `stop()` are safe to call
twice. Every call returns once each record is acknowledged, or raises the retryable
OutboxUnavailable, so the agent never acks a batch whose records are not durable.

A copy must fit in one request (`MAX_RECORD`), or aiokafka refuses it for good and the
retries would hold the partition forever. A record that just fit the broker's limit
does not once headers are added, so copies are fitted first (`fitted`): the source's
own headers go, then the key and value (dead letters only) are cut, saying so in headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka.errors import KafkaError
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from dialogue_worker.adapters.topics import keyed_partitioner
from dialogue_worker.domain.records import FORWARDED_FROM, InboundRecord, Rejected
from dialogue_worker.errors import OutboxUnavailable
from dialogue_worker.services.ports import Event
from platform_common.kafka import STALE_PRODUCER, ScopedProducer, close_producer

log = logging.getLogger(__name__)

REASON = "x-dlq-reason"  # human-readable reason, UTF-8
KIND = "x-dlq-kind"  # a RejectKind: invalid, unknown_chat, not_member, ..., wrong_partition
SOURCE_TOPIC = "x-dlq-topic"
SOURCE_PARTITION = "x-dlq-partition"
SOURCE_OFFSET = "x-dlq-offset"
#: The prefix of the headers a dead letter gets from the worker, and of no other header in it.
DLQ_PREFIX = "x-dlq-"
#: Put before a source header's name that starts with DLQ_PREFIX (`prev-x-dlq-reason`).
PREVIOUS = "prev-"
#: On a dead letter whose value was cut to fit: the original value's size in bytes.
TRUNCATED = "x-dlq-truncated"
#: On a dead letter whose key was cut to fit: the original key's size in bytes.
KEY_TRUNCATED = "x-dlq-key-truncated"
#: On a dead letter whose source headers did not fit beside the x-dlq-* ones: how many
#: were left out (they are never cut: a header is kept whole or not at all).
HEADERS_DROPPED = "x-dlq-headers-dropped"
#: On a dead letter whose source had neither key nor value: "1". Kafka needs one of the
#: two, so the copy's value is empty instead of null.
NULL_RECORD = "x-dlq-null-record"
#: On a dead letter: the source record's Kafka timestamp, in milliseconds (the copy's own
#: is when it was dead-lettered; the source may be gone by retention).
SOURCE_TIMESTAMP = "x-dlq-timestamp"
#: On a forwarded record whose source headers did not fit beside FORWARDED_FROM: how
#: many were left out (a copy the owner dead-letters later carries it on).
FORWARD_HEADERS_DROPPED = "x-forwarded-headers-dropped"
#: The largest record the outbox sends (its producer's max_request_size, aiokafka's default).
MAX_RECORD = 1_048_576
#: Seconds a producer may take to start (aiokafka waits for a producer id for ever when a
#: broker answers metadata but none grants one).
START_WITHIN = 30.0
#: Seconds a producer given up, or the outbox's own at shutdown, may take to deliver what
#: it holds; then the rest fails (an idempotent producer retries a batch for a partition
#: without a leader for ever, and its stop waits for it: a shutdown never ended).
STOP_WITHIN = 5.0

Headers = list[tuple[str, bytes | None]]
#: topic, value, key, headers, partition (None: the producer's keyed partitioner), and
#: the timestamp in milliseconds (None: now).
Outgoing = tuple[str, bytes | None, bytes | None, Headers, int | None, int | None]


def record_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """aiokafka's upper bound of the size of one record in a request."""
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
    return size


def fitted(
    key: bytes | None,
    value: bytes | None,
    own: Headers,
    added: Headers,
    *,
    cut: bool,
    dropped: str,
) -> tuple[bytes | None, bytes | None, Headers]:
    """Key, value and headers of a copy that fits MAX_RECORD: the source's `own` headers
    are kept if they fit beside `added`, else left out, with a header `dropped` saying how
    many; then, if `cut`, the key and value are cut (`_cut`). Without `cut` (a forward) a
    value that does not fit is returned whole (a valid record's value is bounded far below
    the limit by the contract, and a forward's key is a chat id)."""
    if record_size(key, value, [*own, *added]) <= MAX_RECORD:
        return key, value, [*own, *added]
    if own:  # the copy says what it left out (a forward's did not: found in review)
        added = [*added, (dropped, str(len(own)).encode())]
    if not cut or record_size(key, value, added) <= MAX_RECORD:
        return key, value, added
    return _cut(key, value, added)


#: What the key's and value's lengths may add to `record_size(b"", b"", headers)`: it
#: counts each as a one-byte varint, and a length below 2 MiB takes at most three.
_LENGTH_VARINTS = 4


def _shares(room: int, key_size: int, value_size: int) -> tuple[int, int]:
    """How many bytes the key and the value keep of `room`: each what the other does not
    need, and half of it each when both need more (a null value leaves it all to the key)."""
    key_keeps = min(key_size, max(room // 2, room - value_size))
    return key_keeps, min(value_size, room - key_keeps)


def _cut(
    key: bytes | None, value: bytes | None, added: Headers
) -> tuple[bytes | None, bytes | None, Headers]:
    """Key and value cut to fit beside `added`, with a header for each one that lost bytes
    (TRUNCATED, KEY_TRUNCATED: its original size). A header takes room itself, so the
    shares are worked out again with the headers they call for until those are the same:
    less room never cuts less, so that is at most three rounds."""
    key_size, value_size = len(key or b""), len(value or b"")
    marks: Headers = []
    while True:
        headers = [*added, *marks]
        room = max(MAX_RECORD - record_size(b"", b"", headers) - _LENGTH_VARINTS, 0)
        key_keeps, value_keeps = _shares(room, key_size, value_size)
        needed: Headers = []
        if value_keeps < value_size:
            needed.append((TRUNCATED, str(value_size).encode()))
        if key_keeps < key_size:
            needed.append((KEY_TRUNCATED, str(key_size).encode()))
        if needed == marks:
            break
        marks = needed
    cut_key = None if key is None else key[:key_keeps]
    return cut_key, None if value is None else value[:value_keeps], headers


def carried(headers: Sequence[tuple[str, bytes | None]]) -> Headers:
    """The source's headers as its dead letter carries them: one named x-dlq-* gets PREVIOUS
    before its name, so every x-dlq-* header of a dead letter is the worker's and there once.
    A source has them when a dead letter was replayed (its earlier reasons, kept as the
    record's history, oldest first) or when a producer forged them. Renamed rather than
    dropped, as a dead letter carries its source's headers; not to `x-dlq-prev-*`, a name
    in the worker's own prefix, which a reader taking every x-dlq-* header would misread.
    The longer names count against MAX_RECORD like any source header."""
    return [
        (PREVIOUS + name if name.startswith(DLQ_PREFIX) else name, value) for name, value in headers
    ]


def dead_letter_copy(rejected: Rejected) -> tuple[bytes | None, bytes | None, Headers]:
    """The dead letter's key, value and headers (the source's as `carried` gives them,
    then the x-dlq-* ones)."""
    record = rejected.record
    added: Headers = [
        (REASON, rejected.reason.encode()),
        (KIND, rejected.kind.value.encode()),
        (SOURCE_TOPIC, record.topic.encode()),
        (SOURCE_PARTITION, str(record.partition).encode()),
        (SOURCE_OFFSET, str(record.offset).encode()),
    ]
    if record.timestamp_ms is not None:
        added.append((SOURCE_TIMESTAMP, str(record.timestamp_ms).encode()))
    if record.key is None and record.value is None:
        added.append((NULL_RECORD, b"1"))
        return fitted(None, b"", carried(record.headers), added, cut=True, dropped=HEADERS_DROPPED)
    return fitted(
        record.key, record.value, carried(record.headers), added, cut=True, dropped=HEADERS_DROPPED
    )


def forward_copy(record: InboundRecord, cid: str) -> tuple[bytes | None, bytes | None, Headers]:
    """The forwarded copy's key (the cid), value and headers: the source's, then
    FORWARDED_FROM. A source that has one already (forwarded before, by a worker that
    counted the topic's partitions otherwise, or forged) has it renamed with PREVIOUS,
    oldest first, so a copy names one place it was read, as `carried` does for DLQ_PREFIX."""
    where = f"{record.topic}/{record.partition}/{record.offset}".encode()
    own = [
        (PREVIOUS + name if name == FORWARDED_FROM else name, value)
        for name, value in record.headers
    ]
    return fitted(
        cid.encode(),
        record.value,
        own,
        [(FORWARDED_FROM, where)],
        cut=False,
        dropped=FORWARD_HEADERS_DROPPED,
    )


class KafkaOutbox:
    """Owns the producer; the topics are the dead-letter, message and events topics."""

    def __init__(self, bootstrap: str, *, dlq_topic: str, topic: str, events_topic: str) -> None:
        self.dlq_topic = dlq_topic
        self.topic = topic
        self.events_topic = events_topic
        self._bootstrap = bootstrap
        self._producer: ScopedProducer | None = None
        self._started = False  # start() was called (and stop() not): a renewal may restart
        self._starting = asyncio.Lock()
        self._retiring: set[asyncio.Future[None]] = set()  # producers given up, stopping
        self._partition_of: Callable[[str], int] | None = None

    def route(self, partition_of: Callable[[str], int]) -> None:
        """Forward a chat's records to the partition this rule gives, the one the
        workers' own check uses, rather than where the producer's live metadata would
        hash the key: after partitions are added to the topic the two differ until every
        worker restarts, and a record forwarded by the producer's count was forwarded
        again by the next worker's check, for ever."""
        self._partition_of = partition_of

    def _new_producer(self) -> ScopedProducer:
        return ScopedProducer(
            metadata_topics=(self.topic, self.events_topic, self.dlq_topic),
            bootstrap_servers=self._bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_request_size=MAX_RECORD,
            client_id="dialogue-worker",
            partitioner=keyed_partitioner,
        )

    async def start(self) -> None:
        self._started = True
        async with self._starting:  # one producer at a time, whoever asks
            if self._producer is not None:
                return
            producer = self._new_producer()
            try:
                async with asyncio.timeout(START_WITHIN):  # it waits for a producer id
                    await producer.start()
            except BaseException as exc:  # failed, timed out or cancelled: nothing left
                self._retire(producer)
                if isinstance(exc, KafkaError | TimeoutError):
                    raise OutboxUnavailable(f"cannot start a Kafka producer: {exc!r}") from exc
                raise
            if not self._started:  # stop() came while it started: kept, it ran for good
                self._retire(producer)
                raise OutboxUnavailable("the outbox stopped while its producer started")
            self._producer = producer

    async def stop(self) -> None:
        """Stop the producer and every one given up, each within STOP_WITHIN; a start
        under way is waited for as long (when it ends it stops what it started)."""
        self._started = False
        try:
            async with asyncio.timeout(STOP_WITHIN):
                async with self._starting:
                    pass
        except TimeoutError:
            log.warning("a Kafka producer start still under way; it stops what it starts")
        producer, self._producer = self._producer, None
        if producer is not None:
            self._retire(producer)
        await asyncio.gather(*self._retiring, return_exceptions=True)

    async def dead_letter(self, rejected: Sequence[Rejected]) -> None:
        sends: list[Outgoing] = []
        for r in rejected:
            key, value, headers = dead_letter_copy(r)
            sends.append((self.dlq_topic, value, key, headers, None, None))
        await self._send(sends)

    async def forward(self, records: Sequence[tuple[InboundRecord, str]]) -> None:
        sends: list[Outgoing] = []
        for record, cid in records:
            key, value, headers = forward_copy(record, cid)
            partition = None if self._partition_of is None else self._partition_of(cid)
            # Stamped now, not with the record's own time: a topic that bounds timestamps
            # (log.message.timestamp.before.max.ms) would refuse an old record for good.
            sends.append((self.topic, value, key, headers, partition, None))
        await self._send(sends)

    async def publish(self, events: Sequence[Event]) -> None:
        await self._send(
            [(self.events_topic, e.to_bytes(), e.key(), [], None, None) for e in events]
        )

    async def _send(self, records: Sequence[Outgoing]) -> None:
        """Send in order (one partition keeps the order of what is sent to it), all through
        one producer; wait for all."""
        producer = self._producer
        if producer is None and self._started:  # made again after STALE_PRODUCER
            await self.start()
            producer = self._producer
        if producer is None:
            raise OutboxUnavailable("the Kafka producer is not started")
        try:
            pending: list[Any] = [
                await producer.send(
                    topic,
                    value,
                    key=key,
                    headers=headers,
                    partition=partition,
                    timestamp_ms=timestamp_ms,
                )
                for topic, value, key, headers, partition, timestamp_ms in records
            ]
            await asyncio.gather(*pending)
        except KafkaError as exc:
            if isinstance(exc, STALE_PRODUCER) and self._producer is producer:
                self._producer = None  # the next send starts a new one
                self._retire(producer)
            raise OutboxUnavailable(f"cannot produce to Kafka: {exc!r}") from exc

    def _retire(self, producer: ScopedProducer) -> None:
        """Stop a producer in the background, giving it STOP_WITHIN to deliver what it
        holds (close_producer): what it could not fails, and is sent again by the
        persister's retry. stop() waits for it."""
        task = asyncio.ensure_future(_stop_quietly(producer))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


async def _stop_quietly(producer: ScopedProducer) -> None:
    try:
        if not await close_producer(producer, STOP_WITHIN, "worker producer given up"):
            log.warning("a Kafka producer stopped with records Kafka never took")
    except KafkaError as exc:
        log.warning("a Kafka producer given up did not stop cleanly: %s", exc)
