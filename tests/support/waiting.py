"""The one way tests wait: poll a condition until it holds, never sleep a fixed time.

    stored = await eventually(lambda: count_stored(db), until=lambda n: n == 10)
    await eventually(worker_is_passing)              # truthy result ends the wait

A fault test that must let time pass on purpose (keep a service down for a phase of
traffic) says so with `hold()`, which is the only other place tests may pause.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Default bound of a wait. Generous: on a loaded 2-core CI machine things are slow,
#: and a wait that ends early costs nothing.
WITHIN = 60.0

#: How long past the bound one call of an async probe may run before the wait gives up
#: on it: a probe that hangs (a read with no timeout) must not stretch the wait forever.
PROBE_GRACE = 10.0


class NeverHappened(AssertionError):
    """The condition did not hold within the bound; carries the last value seen."""

    def __init__(self, what: str, within: float, last: object) -> None:
        super().__init__(f"{what} did not happen within {within:g}s (last value: {last!r})")
        self.last = last


class _ProbeHung(Exception):
    """One call of the probe outlived the wait's bound plus `PROBE_GRACE`."""


async def _value(probe: Callable[[], T | Awaitable[T]], deadline: float) -> T:
    result = probe()
    if not inspect.isawaitable(result):
        return result
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic()) + PROBE_GRACE) as bound:
            return await result  # type: ignore[no-any-return]
    except TimeoutError:
        if bound.expired():  # ours, not a timeout the probe itself raised
            raise _ProbeHung from None
        raise


async def eventually(
    probe: Callable[[], Any],
    until: Callable[[Any], bool] = bool,
    *,
    within: float = WITHIN,
    every: float = 0.05,
    what: str | None = None,
) -> Any:
    """Call `probe` (sync or async) until `until(value)` holds; return that value.

    Exceptions from the probe count as "not yet" until the bound, then are raised. An
    async probe still running `PROBE_GRACE` seconds past the bound ends the wait.
    """
    deadline = time.monotonic() + within
    last: object = None
    name = what or getattr(probe, "__name__", "condition")
    while True:
        try:
            last = await _value(probe, deadline)
            if until(last):
                return last
        except AssertionError:
            raise
        except _ProbeHung:
            raise NeverHappened(
                name, within, f"probe still running {PROBE_GRACE:g}s past the bound"
            ) from None
        except Exception as exc:  # not ready yet: a refused connection, a missing row
            if time.monotonic() > deadline:
                raise
            last = exc
        if time.monotonic() > deadline:
            raise NeverHappened(name, within, last)
        await asyncio.sleep(every)


async def hold(seconds: float) -> None:
    """Let time pass on purpose (a phase of traffic during a fault), not to synchronise."""
    await asyncio.sleep(seconds)


async def settle() -> None:
    """Let every ready callback of the loop run: a deterministic "nothing else happened"."""
    for _ in range(10):
        await asyncio.sleep(0)
