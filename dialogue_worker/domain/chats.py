"""Chats: who belongs to them, and who may read and write them."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.api import Chat
from contracts.errors import ErrorCode
from dialogue_worker.errors import RequestError

MIN_USERS = 2


@dataclass(frozen=True)
class ChatView:
    """A chat as the worker stores it: id (ObjectId hex), members, creation time."""

    id: str
    users: frozenset[int]
    created_at: int

    def has_member(self, uid: int) -> bool:
        return uid in self.users

    def to_api(self) -> Chat:
        return Chat(id=self.id, users=sorted(self.users), createdAt=self.created_at)


def new_chat_users(users: list[int]) -> list[int]:
    """The members of a chat to create: at least two distinct users (4004), sorted."""
    distinct = sorted(set(users))
    if len(distinct) < MIN_USERS:
        raise RequestError(ErrorCode.TOO_FEW_USERS, "a chat needs at least 2 distinct users")
    return distinct


def require_member(chat: ChatView | None, uid: int) -> ChatView:
    """The chat when uid belongs to it: 4040 for an unknown chat, 4031 for a non-member."""
    if chat is None:
        raise RequestError(ErrorCode.NOT_FOUND, "chat not found")
    if not chat.has_member(uid):
        raise RequestError(ErrorCode.NOT_MEMBER, "user does not belong to chat")
    return chat
