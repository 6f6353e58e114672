"""One write at a time, in the background, in the order submitted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class WriteBehind(Generic[T]):
    """Runs `write` for one batch at a time in the background, in the order submitted.

    `submit` waits for the previous write to finish, then starts this one and returns at
    once, so the caller can gather the next batch meanwhile. A failed write raises from
    the next `submit` or `flush` (and is logged when it happens).
    """

    def __init__(self, write: Callable[[T], Awaitable[None]]) -> None:
        self._write = write
        self._in_flight: asyncio.Future[None] | None = None

    async def submit(self, batch: T) -> None:
        await self.flush()
        self._in_flight = asyncio.ensure_future(self._write(batch))
        self._in_flight.add_done_callback(_log_failure)

    async def flush(self) -> None:
        """Wait for the write in flight, if any."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await in_flight

    async def cancel(self) -> None:
        """Abandon the write in flight (its records are not acked, so they are redelivered)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None and not in_flight.done():
            in_flight.cancel()
            await asyncio.gather(in_flight, return_exceptions=True)


def _log_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("batch write failed", exc_info=done.exception())
