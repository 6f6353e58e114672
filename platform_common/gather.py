"""Many calls of one kind, a few at a time: the pattern behind every fan-out of reads and
writes to MongoDB (one round trip per document, which FerretDB serves in parallel)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class NotStarted(Exception):
    """A call that `bounded` did not start because another one had failed."""


async def bounded(items: Iterable[T], call: Callable[[T], Awaitable[R]], limit: int) -> list[R]:
    """`call(item)` for every item, at most `limit` at a time; the results in item order.

    After a call fails no more start, and the first failure is raised. Calls already
    running are not cancelled, as `asyncio.gather` leaves them: they end on their own
    (the worker cancels a MongoDB call from outside only at shutdown; docs/decisions.md,
    "The health ping is never cancelled").
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    gate = asyncio.Semaphore(limit)
    failed = False

    async def one(item: T) -> R:
        nonlocal failed
        async with gate:
            if failed:
                raise NotStarted
            try:
                return await call(item)
            except BaseException:
                failed = True
                raise

    return list(await asyncio.gather(*(one(i) for i in items)))
