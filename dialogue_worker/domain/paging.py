"""Cursor paging, newest first: parameters, and cutting a page out of `limit + 1` rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar

from contracts.errors import ErrorCode
from contracts.ids import is_object_id
from dialogue_worker.errors import RequestError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Direction(Enum):
    OLDER = "before"  # ids below the cursor, newest first (the default)
    NEWER = "after"  # the ids right above the cursor, returned newest first


@dataclass(frozen=True)
class PageRequest:
    """Which slice to read: `limit` ids past `cursor` in `direction`."""

    limit: int
    cursor: str | None = None
    direction: Direction = Direction.OLDER


class HasId(Protocol):
    @property
    def id(self) -> str: ...


T = TypeVar("T", bound=HasId)


def parse_limit(raw: str | None) -> int:
    """1..200, default 50 (4005 otherwise)."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4 or not 1 <= int(raw) <= MAX_LIMIT:
        raise RequestError(ErrorCode.BAD_PAGING, f"limit must be 1..{MAX_LIMIT}, got {raw[:40]!r}")
    return int(raw)


def _cursor(name: str, raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if not is_object_id(raw):
        raise RequestError(ErrorCode.BAD_PAGING, f"{name} must be an id, got {raw[:40]!r}")
    return raw


def chats_page_request(query: Mapping[str, str]) -> PageRequest:
    """`?limit=&cursor=`: the chats older than cursor (the last id of the previous page)."""
    return PageRequest(parse_limit(query.get("limit")), _cursor("cursor", query.get("cursor")))


def messages_page_request(query: Mapping[str, str]) -> PageRequest:
    """`?limit=&before=&after=`: at most one of before/after (4005 for both)."""
    limit = parse_limit(query.get("limit"))
    before = _cursor("before", query.get("before"))
    after = _cursor("after", query.get("after"))
    if before and after:
        raise RequestError(ErrorCode.BAD_PAGING, "use either before or after, not both")
    if after:
        return PageRequest(limit, after, Direction.NEWER)
    return PageRequest(limit, before, Direction.OLDER)


def cut_page(rows: Sequence[T], request: PageRequest) -> tuple[list[T], str | None]:
    """The page, newest first, and the cursor for the next one (None at the end).

    `rows` are up to `limit + 1` rows in query order: descending ids for OLDER,
    ascending ids for NEWER. The extra row only tells whether there is more.
    """
    more = len(rows) > request.limit
    page = list(rows[: request.limit])
    if request.direction is Direction.NEWER:
        page.reverse()
        return page, (page[0].id if more and page else None)
    return page, (page[-1].id if more and page else None)
