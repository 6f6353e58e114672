"""Chats: who may read and write them, and how request values are validated."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from contracts.api import Chat
from contracts.errors import ErrorCode
from contracts.ids import is_object_id
from contracts.records import UID_MAX
from dialogue_worker.errors import RequestError

MIN_USERS = 2
UID_DIGITS = str(UID_MAX)
MAX_USERS = 1000


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


def parse_uid(raw: str | None) -> int:
    """A user id from a query parameter: 1 .. 2**63 - 1 in decimal (4002 otherwise)."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > len(UID_DIGITS):
        raise RequestError(ErrorCode.BAD_USER_ID, f"bad user id: {(raw or '')[:40]!r}")
    uid = int(raw)
    if not 1 <= uid <= UID_MAX:
        raise RequestError(ErrorCode.BAD_USER_ID, f"bad user id: {raw!r}")
    return uid


def parse_cid(raw: str | None) -> str:
    """A chat id from the path or query: 24 lowercase hex characters (4001 otherwise)."""
    if not is_object_id(raw):
        raise RequestError(ErrorCode.BAD_CHAT_ID, f"bad chat id: {str(raw)[:40]!r}")
    assert raw is not None
    return raw


def parse_users(body: object) -> list[int]:
    """The `users` of a {"users":[int,...]} body: distinct and sorted."""
    if not isinstance(body, dict) or not isinstance(body.get("users"), list):
        raise RequestError(ErrorCode.MALFORMED, 'body must be {"users": [<user id>, ...]}')
    raw: list[object] = body["users"]
    if len(raw) > MAX_USERS:
        raise RequestError(ErrorCode.MALFORMED, f"at most {MAX_USERS} users per request")
    users: set[int] = set()
    for uid in raw:
        # bool is an int subclass: reject it along with floats and strings.
        if not isinstance(uid, int) or isinstance(uid, bool) or not 1 <= uid <= UID_MAX:
            raise RequestError(ErrorCode.BAD_USER_ID, f"bad user id: {str(uid)[:40]}")
        users.add(uid)
    return sorted(users)


def new_chat_users(body: object) -> list[int]:
    """The members of a chat to create: at least two distinct users (4004 otherwise)."""
    users = parse_users(body)
    if len(users) < MIN_USERS:
        raise RequestError(ErrorCode.TOO_FEW_USERS, "a chat needs at least 2 distinct users")
    return users


def require_member(chat: ChatView | None, uid: int) -> ChatView:
    """The chat when uid belongs to it: 4040 for an unknown chat, 4031 for a non-member."""
    if chat is None:
        raise RequestError(ErrorCode.NOT_FOUND, "chat not found")
    if not chat.has_member(uid):
        raise RequestError(ErrorCode.NOT_MEMBER, "user does not belong to chat")
    return chat


def members_of(chats: Iterable[ChatView]) -> dict[str, frozenset[int]]:
    return {chat.id: chat.users for chat in chats}
