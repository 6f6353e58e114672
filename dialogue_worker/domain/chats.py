"""Chats: who belongs to them, where their history stands, and who may read them."""

from __future__ import annotations

from dataclasses import dataclass

from contracts import requests as rules
from contracts.api import PREVIEW_MAX, Chat, LastMessage
from contracts.errors import ErrorCode
from dialogue_worker.errors import RequestError

#: Seconds past which a chat still pending is abandoned: its creation has long ended (the
#: insert and each try at opening within MONGO_TIMEOUT, 10 s by default, the publish
#: within API_PUBLISH_TIMEOUT, up to 60 s, the opening tried for a second). Generous, as
#: the clock that judges it may be another worker's than the one that created it.
PENDING_MOST = 300.0


@dataclass(frozen=True)
class ChatView:
    """A chat as the worker stores it.

    `opened_at` and `last_at` are the worker's clock (seconds, with fractions) when the
    chat was created and when its newest message was counted: the chat list's order.
    `pending`: created, its `chat.created` not published yet; it may still be removed, so
    nobody is shown it nor may use it until it is opened (`ChatService.create`), when
    `opened_at` becomes that moment.
    """

    id: str
    users: frozenset[int]
    created_at: int
    opened_at: float
    last_seq: int = 0
    last_at: float | None = None
    last_message: LastMessage | None = None
    pending: bool = False

    @property
    def activity(self) -> float:
        """When something last happened in the chat (its newest message, or its creation)."""
        return self.opened_at if self.last_at is None else self.last_at

    def abandoned(self, now: float) -> bool:
        """Pending for longer than its creation can last (PENDING_MOST): its worker died
        before opening it, or could not write; it will never open, and counts as gone."""
        return self.pending and now - self.opened_at > PENDING_MOST

    def has_member(self, uid: int) -> bool:
        return uid in self.users

    def to_api(self, read_seq: int = 0) -> Chat:
        read = min(read_seq, self.last_seq)
        return Chat(
            id=self.id,
            users=sorted(self.users),
            createdAt=self.created_at,
            lastSeq=self.last_seq,
            lastMessage=self.last_message,
            readSeq=read,
            unread=self.last_seq - read,
        )


@dataclass(frozen=True)
class Full:
    """Users not added: with them the chat would have more than `most` members."""

    members: int  # the chat's members when it was read
    new: int  # the named users not among them
    most: int

    def refusal(self) -> RequestError:
        return RequestError(
            ErrorCode.CHAT_FULL,
            f"a chat has at most {self.most} members: this one has {self.members}, "
            f"and {self.new} of these users are not in it",
        )


def preview(mid: str, seq: int, uid: int, text: str, created_at: float) -> LastMessage:
    """A chat's newest message as lists show it: the text cut to PREVIEW_MAX characters."""
    return LastMessage(id=mid, seq=seq, uid=uid, text=text[:PREVIEW_MAX], createdAt=int(created_at))


def new_chat_users(users: list[int]) -> list[int]:
    """The members of a chat to create, sorted; the contract's rule (at least
    MIN_CHAT_USERS distinct users, else 4004) holds also where no request was decoded."""
    try:
        return sorted(rules.new_chat_users(users))
    except rules.RequestProblem as exc:
        raise RequestError(exc.code, exc.message) from None


def require_member(chat: ChatView | None, uid: int) -> ChatView:
    """The chat when uid belongs to it: 4040 for an unknown chat, 4031 for a non-member."""
    if chat is None:
        raise RequestError(ErrorCode.NOT_FOUND, "chat not found")
    if not chat.has_member(uid):
        raise RequestError(ErrorCode.NOT_MEMBER, "user does not belong to chat")
    return chat
