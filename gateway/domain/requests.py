"""Validation of ids, chat members, message text and paging parameters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts import requests as rules
from contracts.errors import ErrorCode
from contracts.records import TEXT_MAX, acceptable_text
from contracts.requests import LIMIT_DEFAULT
from gateway.domain.usernames import SIGN_IN_MAX, Username, canonical, refusal
from gateway.errors import GatewayError

IDEMPOTENCY_KEY_MAX = 255
#: Values one user look-up may name.
LOOKUP_MAX = 50


def chat_id(value: str) -> str:
    """A chat id from the path: 24 lowercase hex characters (else 4001)."""
    return rules.chat_id(value)


def new_chat_members(body: Mapping[str, Any], caller: int) -> list[int]:
    """Members of a chat to create: >= 2 distinct (4004), caller among them (4030)."""
    users = rules.new_chat_users(body.get("users"))
    if caller not in users:
        raise GatewayError(ErrorCode.FORBIDDEN, "you can only create chats you are in")
    return users


def added_members(body: Mapping[str, Any]) -> list[int]:
    """Users to add to a chat: at least one (4000)."""
    return rules.added_users(body.get("users"))


def message_text(body: Mapping[str, Any]) -> str:
    """The `txt` of a message: what a record may carry (4003): not blank, <= TEXT_MAX, no NUL."""
    text = body.get("txt")
    if not isinstance(text, str):
        raise GatewayError(ErrorCode.MALFORMED, "txt must be a string")
    if not acceptable_text(text):
        raise GatewayError(
            ErrorCode.BAD_TEXT, f"txt must be 1-{TEXT_MAX} characters, not blank, without NUL"
        )
    return text


def idempotency_key(header: str | None) -> str | None:
    """The Idempotency-Key header, if any: 1-255 visible ASCII characters."""
    if header is None:
        return None
    if not 1 <= len(header) <= IDEMPOTENCY_KEY_MAX or not rules.visible_ascii(header):
        raise GatewayError(
            ErrorCode.MALFORMED, "Idempotency-Key must be 1-255 visible ASCII characters"
        )
    return header


@dataclass(frozen=True)
class Paging:
    """A page to ask a worker for: `limit`, and at most one cursor, by its query name."""

    limit: int = LIMIT_DEFAULT
    cursor: tuple[str, str] | None = None

    def params(self) -> dict[str, str]:
        """Query parameters for the worker, without the unset ones."""
        return {"limit": str(self.limit), **dict([self.cursor] if self.cursor else [])}


def chat_paging(query: Mapping[str, str]) -> Paging:
    """?limit=&cursor= of GET /v1/chats; the cursor is an earlier page's nextCursor (4005)."""
    rules.paging_once(query, rules.LIST_PAGING)
    cursor = rules.list_cursor(query.get("cursor"))
    return Paging(rules.limit(query.get("limit")), None if cursor is None else ("cursor", cursor))


def message_paging(query: Mapping[str, str]) -> Paging:
    """?limit= and one of before/after (message ids) or beforeSeq/afterSeq (4005)."""
    rules.paging_once(query, rules.HISTORY_PAGING)
    direction, cursor = rules.history_cursor(query)
    if cursor is None:
        return Paging(rules.limit(query.get("limit")))
    name = direction if isinstance(cursor, str) else f"{direction}Seq"
    return Paging(rules.limit(query.get("limit")), (name, str(cursor)))


def read_seq(body: Mapping[str, Any]) -> int:
    """The `seq` of a PUT .../read body: an integer >= 0 (4000)."""
    return rules.read_seq(body)


def user_lookup(ids: list[str], names: list[str]) -> tuple[list[int], list[Username]]:
    """`?id=` or `?username=` of GET /v1/users, repeated: 1-LOOKUP_MAX values of one kind
    (4000), ids in bounds (4002). A name no account can have is left out, not refused:
    it finds no one, like a name nobody took."""
    if bool(ids) == bool(names):
        raise GatewayError(ErrorCode.MALFORMED, "give either id or username (repeatable)")
    if len(ids) + len(names) > LOOKUP_MAX:
        raise GatewayError(ErrorCode.MALFORMED, f"at most {LOOKUP_MAX} values per look-up")
    uids = list(dict.fromkeys(rules.user_id(raw) for raw in ids))
    usernames = [
        Username(name, canonical(name))
        for name in dict.fromkeys(names)
        if len(name) <= SIGN_IN_MAX and refusal(name) is None
    ]
    return uids, usernames
