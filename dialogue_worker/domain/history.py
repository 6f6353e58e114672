"""A chat's history, addressed by seq: message keys, pages, and which seqs a read wants.

Messages are stored one document each, keyed `<cid>:<seq>`, and carry the key of their
page (`PAGE_SIZE` consecutive seqs). A read names a range of seqs, so it costs one look-up
per page it touches (two or three for the default 50 messages), whatever the chat's size.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import Enum

#: Consecutive seqs per page. FerretDB's cost is per document fetched, and a read fetches
#: whole pages: 25 keeps the surplus of a read small (a read of 50 fetches at most 75
#: documents in 2-3 look-ups; with pages of 100 it fetched up to 200 in 1-2; a read of 200
#: touches at most 9 pages; docs/decisions.md).
PAGE_SIZE = 25


def message_key(cid: str, seq: int) -> str:
    """The `_id` of a stored message: zero-padded, so keys sort like seqs."""
    return f"{cid}:{seq:012d}"


def page_of(seq: int) -> int:
    return (seq - 1) // PAGE_SIZE


def page_key(cid: str, page: int) -> str:
    """The key a page's messages carry; it names the page size, so messages stored with
    another size never match (they are looked up by key instead)."""
    return f"{cid}:{PAGE_SIZE}:{page:010d}"


#: The page size of history stored before pages of 25 (main from 2026-11-30 to 12-02).
LEGACY_PAGE_SIZE = 100


def legacy_page_key(cid: str, seq: int) -> str:
    """The page key a message stored with pages of 100 carries: `<cid>:<page>`, no size."""
    return f"{cid}:{(seq - 1) // LEGACY_PAGE_SIZE:010d}"


class Direction(Enum):
    OLDER = "before"  # the newest messages below the cursor (the default)
    NEWER = "after"  # the oldest messages above the cursor


@dataclass(frozen=True)
class HistoryRequest:
    """`limit` messages past `cursor` (a seq; None: from the newest) in `direction`."""

    limit: int
    cursor: int | None = None
    direction: Direction = Direction.OLDER


@dataclass(frozen=True)
class HistoryQuery:
    """A read as asked: the cursor is a seq, or a message id still to be found."""

    limit: int
    cursor: int | str | None = None
    direction: Direction = Direction.OLDER


@dataclass(frozen=True)
class SeqRange:
    """Seqs `first` .. `last` (inclusive); empty when first > last."""

    first: int
    last: int

    @property
    def empty(self) -> bool:
        return self.first > self.last

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and self.first <= seq <= self.last

    def pages(self) -> list[int]:
        return [] if self.empty else list(range(page_of(self.first), page_of(self.last) + 1))


def lacking(seqs: SeqRange, counted: int, found: Iterable[int]) -> list[int]:
    """The seqs of `seqs` up to `counted` (the chat's `lastSeq`) that are not in `found`:
    stored, since the chat counts them, but not in their pages (stored with pages of
    another size, before pages of 25); looked up by key instead."""
    have = set(found)
    return [s for s in range(seqs.first, min(seqs.last, counted) + 1) if s not in have]


async def moment_at_or_before(
    moment_of: Callable[[int], Awaitable[float | None]], top: int, when: float
) -> float | None:
    """The moment of the highest seq in 1..`top` whose moment is at or before `when`
    (None: every one is later), given that moments rise with seq. Probes back from `top`
    in doubling steps, then halves what is left: about 2·log2(distance) probes, one key
    look-up each. A seq without a message (None) counts as later."""

    async def early(seq: int) -> float | None:
        moment = await moment_of(seq)
        return moment if moment is not None and moment <= when else None

    step, probe, above = 1, top, top + 1  # every seq >= above is later than `when`
    while (found := await early(probe)) is None:
        if probe <= 1:
            return None
        above, step = probe, step * 2
        probe = max(1, top - step + 1)
    low, high = probe, above - 1  # `low` is early; the answer is in low..high
    while low < high:
        middle = (low + high + 1) // 2
        if (moment := await early(middle)) is not None:
            low, found = middle, moment
        else:
            high = middle - 1
    return found


def wanted(request: HistoryRequest, last_seq: int) -> SeqRange:
    """The seqs a read returns (at most `limit`), given the chat's newest seq."""
    if request.direction is Direction.NEWER:
        start = (request.cursor or 0) + 1
        return SeqRange(start, min(last_seq, start + request.limit - 1))
    top = last_seq if request.cursor is None else min(last_seq, request.cursor - 1)
    return SeqRange(max(1, top - request.limit + 1), top)


def more_beyond(request: HistoryRequest, seqs: SeqRange, last_seq: int) -> bool:
    """Whether messages exist past this read in its direction (so a next page exists)."""
    if seqs.empty:
        return False
    return seqs.last < last_seq if request.direction is Direction.NEWER else seqs.first > 1
