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

import orjson

from contracts.errors import ErrorCode
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
            snapshot, activity, cid = orjson.loads(raw)
            values = (float(snapshot), float(activity))
            if not all(math.isfinite(v) for v in values) or not isinstance(cid, str):
                raise ValueError("bad fields")
        except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
            raise RequestProblem(
                ErrorCode.BAD_PAGING, "cursor must be a nextCursor of this list"
            ) from None
        return cls(values[0], Position(values[1], cid[:40]))


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
