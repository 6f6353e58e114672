"""What the services need from the outside world; adapters and test fakes implement these.

Every store method raises StorageUnavailable when MongoDB cannot do it right now (a retry
can help); any other exception from a write is about the documents themselves.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from contracts.api import LastMessage
from contracts.events import ChatEvent
from contracts.records import MessageRecord
from dialogue_worker.domain.chats import ChatView, Full
from dialogue_worker.domain.messages import MessageView
from dialogue_worker.domain.records import InboundRecord, Rejected
from dialogue_worker.domain.sequencing import ChatState, Known

Event = ChatEvent


@dataclass(frozen=True)
class ChatForWriting:
    """What the persister needs of a chat: its members and where its sequence stands."""

    members: frozenset[int]
    state: ChatState
    #: The newest seq the chat's document counts (`state` can be ahead of it: messages
    #: stored by a worker that died before it counted them).
    counted: int = 0


@dataclass(frozen=True)
class IdEntry:
    """A message id and where its message is (the `message_ids` collection): `writer`,
    the attempt that last wrote it; `pinned`, whether another attempt wrote it at this
    seq before (then more than one may store its message there); `version`, what this
    write makes its count of writes (0 for a new entry: each rewrite adds one, so that a
    rewrite made from a stale read is refused, see MessageStore.reclaim)."""

    id: str
    cid: str
    seq: int
    uid: int
    digest: str
    partition: int
    offset: int
    writer: str | None = None
    pinned: bool = False
    version: int = 0


@dataclass(frozen=True)
class StoredMessage:
    """One message of a chat's history, under its seq."""

    cid: str
    seq: int
    id: str
    uid: int
    text: str
    created_at: float
    at: float  # when the worker stored it (its clock)
    partition: int
    offset: int


@dataclass(frozen=True)
class ChatAdvance:
    """A chat's sequence moved: its newest seq, the record behind it, and its preview."""

    cid: str
    state: ChatState
    at: float
    last: LastMessage


class MessageStore(Protocol):
    """The sequenced write path of the agent."""

    def unstorable(self, message: MessageRecord) -> str | None:
        """Why the store could never hold this message (e.g. it cannot be encoded), or None."""
        ...

    async def writable(self) -> None:
        """A plain write succeeds right now (else StorageUnavailable)."""
        ...

    async def chats_for_writing(self, cids: Collection[str]) -> dict[str, ChatForWriting]:
        """Members and sequence state of the chats that exist, the state checked against
        the history (a crash may have stored messages the chat does not count yet)."""
        ...

    async def known(self, ids: Collection[str]) -> dict[str, Known]:
        """The message ids of `ids` that are stored, with where they point."""
        ...

    async def claim(self, entries: Sequence[IdEntry]) -> set[str]:
        """Store the id entries, in each chat from the lowest seq, stopping at the first id
        that is there already; the ids not written (there already, or after one that was
        in their chat). So an attempt whose plan counted a stored message as new leaves no
        entry above it, which a crash would leave as a seat nobody fills below."""
        ...

    async def reclaim(self, entries: Sequence[IdEntry], was: Mapping[str, Known]) -> set[str]:
        """Overwrite id entries whose message is not stored, each only while it is as it
        was looked up (`was`, by id: the same seq, writer and version; the version goes up
        by one, so of two rewrites made from one look-up only the first applies) and that
        seq does not hold its message; the ids whose entry another writer wrote meanwhile,
        or whose message was stored there meanwhile, left as they are."""
        ...

    async def append(self, messages: Sequence[StoredMessage]) -> dict[str, int]:
        """Store the messages; for each chat where a seq already holds another message,
        the lowest such seq."""
        ...

    async def retract(self, messages: Sequence[StoredMessage]) -> None:
        """Remove these messages where this attempt stored them (same id and same `at`, so
        never a copy another writer stored at the same seq): an append the store refused
        leaves none of the messages it stored beside the refused one behind."""
        ...

    async def counts(self, cids: Collection[str]) -> dict[str, int]:
        """The newest seq each chat's document counts (`lastSeq`), of the chats that exist."""
        ...

    async def restamp(self, stamps: Sequence[tuple[str, int]], at: float) -> None:
        """Set the moment (`at`) of the messages at these (cid, seq)."""
        ...

    async def advance(self, updates: Sequence[ChatAdvance]) -> None:
        """Record each chat's newest seq, activity and preview (never moving back)."""
        ...


class ChatStore(Protocol):
    """Chats, their history and read markers, for the internal API."""

    async def insert_chat(self, chat: ChatView) -> None:
        """Store a new chat as pending (`ChatView.pending`)."""
        ...

    async def open_chat(self, cid: str, at: float) -> None:
        """A pending chat's event is out: it is a chat like any other from now on, opened
        `at` (so a chat list begun before is not told of it, as of a chat created after)."""
        ...

    async def remove_chat(self, cid: str) -> None:
        """Remove a chat that was just created and never given out (no messages, no markers)."""
        ...

    async def get_chat(self, cid: str) -> ChatView | None: ...

    async def chats_of(self, uid: int) -> list[ChatView]:
        """Every chat `uid` belongs to (the list is ordered and paged by the service)."""
        ...

    async def add_members(
        self, cid: str, member: int, users: Sequence[int], most: int
    ) -> tuple[ChatView, list[int]] | Full | None:
        """Add users if `member` belongs to the chat: the chat after, and who was new.
        None when the chat does not exist or `member` is not in it; Full (nothing added)
        when the chat would then have more than `most` members. Checked and applied as
        one write: concurrent additions never take a chat past `most`."""
        ...

    async def history(self, cid: str, pages: Sequence[int]) -> list[MessageView]:
        """The stored messages of these pages of the chat, in no particular order."""
        ...

    async def messages_at(self, cid: str, seqs: Sequence[int]) -> list[MessageView]:
        """The stored messages with these seqs, looked up one by one by key."""
        ...

    async def seq_of(self, cid: str, mid: str) -> int | None:
        """The seq of message `mid` in chat `cid`, or None when it is not stored there."""
        ...

    async def activity_as_of(self, cid: str, last_seq: int, when: float) -> float | None:
        """When the chat's newest message stored by `when` was stored (None: none was)."""
        ...

    async def read_markers(self, uid: int) -> dict[str, int]:
        """`uid`'s read marker in each chat that has one."""
        ...

    async def read_marker(self, cid: str, uid: int) -> int: ...

    async def move_read(self, cid: str, uid: int, seq: int) -> tuple[int, bool]:
        """Move the marker forward to `seq`: the marker after, and whether it moved."""
        ...

    async def ping(self) -> None: ...


class Barrier(Protocol):
    """The events topic as this worker reads it."""

    async def caught_up(self, within: float) -> bool:
        """Whether every event published before the call has been read (waiting up to
        `within` seconds); False when that cannot be told in time."""
        ...


class Outbox(Protocol):
    """What the worker produces to Kafka. Each call returns once every record is durable
    (acks=all), or raises a retryable error."""

    async def dead_letter(self, rejected: Sequence[Rejected]) -> None: ...

    async def forward(self, records: Sequence[tuple[InboundRecord, str]]) -> None:
        """Produce each record again, keyed by its chat id (the str), so it lands on its
        chat's partition."""
        ...

    async def publish(self, events: Sequence[Event]) -> None: ...


class PartitionLog(Protocol):
    """The partitions the worker reads, as Kafka holds them."""

    async def first_record(self, tp: tuple[str, int], offset: int, end: int) -> int | None:
        """The offset of the first record at or after `offset` and below `end`, or None."""
        ...

    async def rewind(self, tp: tuple[str, int], offset: int) -> None:
        """Read the partition again from `offset` (its records are handed over anew)."""
        ...

    async def start(self, tp: tuple[str, int]) -> int:
        """The first offset the partition still holds: below it, retention (or a
        `DeleteRecords`) removed the records."""
        ...
