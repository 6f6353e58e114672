"""What the services need from the outside world; adapters and test fakes implement these."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from contracts.records import MessageRecord
from dialogue_worker.domain.chats import ChatView
from dialogue_worker.domain.messages import MessageView
from dialogue_worker.domain.paging import PageRequest
from dialogue_worker.domain.records import Rejected, RejectKind


@dataclass(frozen=True)
class InsertOutcome:
    inserted: int
    duplicates: int  # already stored: a redelivery, not an error
    #: Messages the store did not take, by their index in the call: why, and of what kind.
    refused: Mapping[int, tuple[RejectKind, str]] = field(default_factory=dict)


class MessageStore(Protocol):
    """Raises StorageUnavailable when MongoDB cannot do it right now (a retry can help);
    any other exception from a write is about the messages themselves."""

    def unstorable(self, message: MessageRecord) -> str | None:
        """Why the store could never hold this message (e.g. it cannot be encoded), or None."""
        ...

    async def insert_messages(self, messages: Sequence[MessageRecord]) -> InsertOutcome: ...

    async def writable(self) -> None:
        """A plain write succeeds right now (else StorageUnavailable)."""
        ...

    async def chat_members(self, cids: Collection[str]) -> dict[str, frozenset[int]]: ...


class DeadLetters(Protocol):
    """Raises DeadLetterUnavailable when the records are not durably in the DLQ topic."""

    async def send(self, rejected: Sequence[Rejected]) -> None: ...


class ChatStore(Protocol):
    """Chats and the message history; raises StorageUnavailable like MessageStore."""

    async def insert_chat(self, chat: ChatView) -> None: ...

    async def get_chat(self, cid: str) -> ChatView | None: ...

    async def chats_of(self, uid: int, request: PageRequest) -> list[ChatView]:
        """Up to request.limit + 1 chats of uid, newest first, older than the cursor."""
        ...

    async def add_members(self, cid: str, member: int, users: Sequence[int]) -> ChatView | None:
        """Add users to the chat if `member` belongs to it; None when it does not (or no chat)."""
        ...

    async def messages(self, cid: str, request: PageRequest) -> list[MessageView]:
        """Up to request.limit + 1 messages past the cursor, in the query order of cut_page."""
        ...

    async def ping(self) -> None: ...
