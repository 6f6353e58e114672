"""Cursor paging, newest first: which slice to read, and cutting a page out of `limit + 1` rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, TypeVar


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
