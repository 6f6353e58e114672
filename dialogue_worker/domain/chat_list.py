"""A user's chats by last activity, paged exactly while chats move.

The list is a snapshot: the first page fixes a time T (the worker's clock), and every
page ranks each chat by its activity as of T (its newest message counted by then, else
its creation). A chat that gets a message while the client pages keeps its place in the
snapshot, so no chat is skipped or repeated; the client learns of the move from live
events or the next first page. Chats created after T are not part of the snapshot. The
cursor carries T and the position of the last chat given, opaque to clients.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

import orjson

from contracts.errors import ErrorCode
from contracts.ids import is_object_id
from contracts.requests import RequestProblem
from dialogue_worker.domain.chats import ChatView

CURSOR_MAX = 200  # characters of an encoded cursor


@dataclass(frozen=True, order=True)
class Position:
    """Where a chat ranks: by activity, then by id (both descending in the list)."""

    activity: float
    cid: str


@dataclass(frozen=True)
class ListCursor:
    snapshot: float  # T
    after: Position  # the last chat of the previous page

    def encode(self) -> str:
        raw = orjson.dumps([self.snapshot, self.after.activity, self.after.cid])
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> ListCursor:
        """A cursor given out by `encode` (4005 for anything else)."""
        try:
            if len(text) > CURSOR_MAX:
                raise ValueError("too long")
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            value = orjson.loads(raw)
            # Exactly what encode writes: [T, activity, chat id]. Until 2026-12-08 any
            # three things float() took (numbers as strings, a bool, an object's keys, a
            # string's characters) and any text as the chat id were read as a cursor.
            if not isinstance(value, list) or len(value) != 3:
                raise ValueError("not [T, activity, chat id]")
            snapshot, activity, cid = value
            if not (_number(snapshot) and _number(activity) and is_object_id(cid)):
                raise ValueError("bad fields")
        except (ValueError, binascii.Error, orjson.JSONDecodeError):
            raise RequestProblem(
                ErrorCode.BAD_PAGING, "cursor must be a nextCursor of this list"
            ) from None
        return cls(float(snapshot), Position(float(activity), cid))


def _number(value: object) -> TypeGuard[float]:
    """A finite JSON number (orjson reads ints past 2**64 - 1 as floats); not a bool."""
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Ranked:
    position: Position
    chat: ChatView


def in_snapshot(chat: ChatView, snapshot: float) -> bool:
    return chat.opened_at <= snapshot


def moved_since(chat: ChatView, snapshot: float) -> bool:
    """Whether the chat's activity is newer than the snapshot (its rank must be looked up)."""
    return chat.activity > snapshot


def page_of_chats(
    ranked: Sequence[Ranked], snapshot: float, after: Position | None, limit: int
) -> tuple[list[ChatView], ListCursor | None]:
    """The page (most recent activity first) after `after`, and the cursor of the next."""
    order = sorted(ranked, key=lambda r: r.position, reverse=True)
    rest = [r for r in order if after is None or r.position < after]
    page = rest[:limit]
    more = len(rest) > limit
    cursor = ListCursor(snapshot, page[-1].position) if more and page else None
    return [r.chat for r in page], cursor
