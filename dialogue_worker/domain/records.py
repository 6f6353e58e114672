"""Sorting a batch of raw Kafka records into messages to store and dead letters."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from contracts.records import UNREADABLE_HEADER, InvalidRecord, MessageRecord, decode_record
from platform_common.logs import clip


@dataclass(frozen=True)
class InboundRecord:
    """One record as read from Kafka, with where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()  # a null value stays null
    timestamp_ms: int | None = None  # the record's Kafka timestamp (CreateTime, usually)

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


class RejectKind(StrEnum):
    INVALID = "invalid"  # not a valid v1 record
    UNKNOWN_CHAT = "unknown_chat"  # the cid names no chat
    NOT_MEMBER = "not_member"  # the author is not a member of the chat
    UNSTORABLE = "unstorable"  # valid, but the store cannot hold it (encoding, a refused write)
    ID_CONFLICT = "id_conflict"  # its id is already stored with another chat, author or text
    WRONG_PARTITION = "wrong_partition"  # forwarded once, and still not on its chat's partition


#: On a forwarded record: where it was read ("topic/partition/offset").
FORWARDED_FROM = "x-forwarded-from"


#: The longest reason a dead letter carries (characters); a reason quotes the record, and
#: a record may be a megabyte.
REASON_MAX = 1000


@dataclass(frozen=True)
class Rejected:
    """A record for the dead-letter topic, with why it was refused (cut to REASON_MAX)."""

    record: InboundRecord
    kind: RejectKind
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", clip(self.reason, REASON_MAX))


@dataclass(frozen=True)
class Accepted:
    record: InboundRecord
    message: MessageRecord


@dataclass
class Sorted:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    #: Valid records on another partition than their chat's, with the chat id: produced
    #: again to the chat's partition, so one owner gives a chat its seqs.
    forward: list[tuple[InboundRecord, str]] = field(default_factory=list)


def decode_all(records: Sequence[InboundRecord]) -> Sorted:
    """Decode every record; invalid ones are rejected with the validation reason, and
    so is one whose decoding failed in any other way (a defect, but a record's value is a
    stranger's: it is dead-lettered rather than stop its partition, docs/security.md)."""
    result = Sorted()
    for record in records:
        if (why := _unreadable(record)) is not None:  # its batch could not be read
            result.rejected.append(Rejected(record, RejectKind.INVALID, why))
            continue
        try:
            result.accepted.append(Accepted(record, decode_record(record.value)))
        except InvalidRecord as exc:
            result.rejected.append(Rejected(record, RejectKind.INVALID, exc.reason))
        except Exception as exc:  # no record may stop its partition
            reason = f"undecodable: {type(exc).__name__}"
            result.rejected.append(Rejected(record, RejectKind.INVALID, reason))
    return result


def check_partition(batch: Sorted, partition_of: Callable[[str], int]) -> Sorted:
    """Keep the records read from their chat's partition; the others are to be forwarded,
    but a forwarded copy that is still not on its chat's partition is dead-lettered: two
    workers that count the topic's partitions differently (partitions added, not every
    worker restarted) sent one copy back and forth for as long as they both ran, and the
    message was never stored (found in review)."""
    result = Sorted(rejected=list(batch.rejected), forward=list(batch.forward))
    for item in batch.accepted:
        owner = partition_of(item.message.cid)
        if item.record.partition == owner:
            result.accepted.append(item)
        elif (came := _forwarded_from(item.record)) is not None:
            why = (
                f"forwarded from {came} to partition {item.record.partition}, whose worker "
                f"places chat {item.message.cid} on partition {owner}: the workers count the "
                "topic's partitions differently (restart them all, then replay this record)"
            )
            result.rejected.append(Rejected(item.record, RejectKind.WRONG_PARTITION, why))
        else:
            result.forward.append((item.record, item.message.cid))
    return result


def _unreadable(record: InboundRecord) -> str | None:
    """Why the consumer could not read the batch this record stands in for, or None."""
    for name, value in record.headers:
        if name == UNREADABLE_HEADER:
            return (value or b"?").decode(errors="backslashreplace")
    return None


def _forwarded_from(record: InboundRecord) -> str | None:
    """Where a forwarded copy was forwarded from (its newest FORWARDED_FROM), or None."""
    for name, value in record.headers:
        if name == FORWARDED_FROM:
            return "?" if value is None else value.decode(errors="backslashreplace")
    return None


def check_storable(batch: Sorted, unstorable: Callable[[MessageRecord], str | None]) -> Sorted:
    """Keep the messages the store can hold; `unstorable` says why one cannot."""
    result = Sorted(rejected=list(batch.rejected), forward=list(batch.forward))
    for item in batch.accepted:
        reason = unstorable(item.message)
        if reason is None:
            result.accepted.append(item)
        else:
            result.rejected.append(Rejected(item.record, RejectKind.UNSTORABLE, reason))
    return result


def check_membership(batch: Sorted, members: Mapping[str, frozenset[int]]) -> Sorted:
    """Keep the messages whose author belongs to the chat; reject the others."""
    result = Sorted(rejected=list(batch.rejected), forward=list(batch.forward))
    for item in batch.accepted:
        msg = item.message
        users = members.get(msg.cid)
        if users is None:
            result.rejected.append(
                Rejected(item.record, RejectKind.UNKNOWN_CHAT, f"unknown chat {msg.cid}")
            )
        elif msg.uid not in users:
            reason = f"user {msg.uid} is not a member of chat {msg.cid}"
            result.rejected.append(Rejected(item.record, RejectKind.NOT_MEMBER, reason))
        else:
            result.accepted.append(item)
    return result
