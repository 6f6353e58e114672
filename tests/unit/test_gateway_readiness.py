"""/ready's checks: one round at a time, shared for FRESH_FOR, never a 5000."""

from __future__ import annotations

import asyncio

from gateway.services.readiness import FRESH_FOR, Readiness
from tests.support.gateway_fakes import World
from tests.support.waiting import settle


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingUsers:
    """The user store's ping, counted, held until released."""

    def __init__(self) -> None:
        self.pings = 0
        self.release = asyncio.Event()
        self.fail: BaseException | None = None

    async def ping(self) -> None:
        self.pings += 1
        await self.release.wait()
        if self.fail is not None:
            raise self.fail


def _readiness(world: World, users: CountingUsers, clock: Clock) -> Readiness:
    return Readiness(world.bus, users, world.workers, world.feed, clock)  # type: ignore[arg-type]


async def test_calls_at_once_and_within_the_freshness_share_one_round() -> None:
    """Each round costs a MySQL query and a worker ping, for anyone who asks."""
    users, clock = CountingUsers(), Clock()
    readiness = _readiness(World(), users, clock)
    waiting = [asyncio.ensure_future(readiness.checks()) for _ in range(50)]
    await settle()  # let them all ask (no time passes)
    users.release.set()
    rounds = await asyncio.gather(*waiting)
    assert users.pings == 1 and all(all(c.ok for c in r) for r in rounds)
    clock.now += FRESH_FOR / 2
    await readiness.checks()
    assert users.pings == 1
    clock.now += FRESH_FOR
    await readiness.checks()
    assert users.pings == 2


async def test_a_caller_leaving_does_not_cancel_the_round() -> None:
    users, clock = CountingUsers(), Clock()
    readiness = _readiness(World(), users, clock)
    leaving = asyncio.ensure_future(readiness.checks())
    await settle()
    leaving.cancel()
    staying = asyncio.ensure_future(readiness.checks())
    users.release.set()
    assert all(check.ok for check in await staying) and users.pings == 1


async def test_an_unexpected_failure_of_a_check_is_a_failed_check() -> None:
    """It ended /ready as a 5000 instead of saying which part failed."""
    users, clock = CountingUsers(), Clock()
    users.fail = KeyError("surprise")
    users.release.set()
    checks = {c.name: c for c in await _readiness(World(), users, clock).checks()}
    assert not checks["mysql"].ok and "KeyError" in checks["mysql"].detail
    assert checks["kafka"].ok and checks["workers"].ok and checks["events"].ok
