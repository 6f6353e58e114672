"""Retry pacing shared by the services: exponential backoff with jitter."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Backoff:
    """Delays that double from `initial` up to `maximum`, each scaled by a random
    factor in [1 - jitter, 1] so many clients do not retry in lock-step."""

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 5.0,
        *,
        jitter: float = 0.5,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not 0 < initial <= maximum:
            raise ValueError("need 0 < initial <= maximum")
        if not 0 <= jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._rand = rand
        self._failures = 0

    @property
    def failures(self) -> int:
        """Consecutive failures since the last reset."""
        return self._failures

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before the next try."""
        ceiling = min(self.maximum, self.initial * 2.0 ** min(self._failures, 60))
        self._failures += 1
        return ceiling * (1.0 - self.jitter * self._rand())

    def reset(self) -> None:
        self._failures = 0


async def retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    retry_on: Callable[[Exception], bool],
    backoff: Backoff,
    deadline: float | None = None,
    on_failure: Callable[[Exception, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call `attempt` until it returns. An exception `retry_on` accepts is reported to
    `on_failure` with the pause that follows; past `deadline` (a `clock` time) it is
    raised instead. Any other exception is raised at once."""
    while True:
        try:
            return await attempt()
        except Exception as exc:
            if not retry_on(exc):
                raise
            delay = backoff.next_delay()
            if deadline is not None and clock() + delay > deadline:
                raise
            if on_failure is not None:
                on_failure(exc, delay)
            await sleep(delay)
