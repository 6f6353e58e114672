"""Readiness: the Kafka producer, MySQL and at least one worker answer; events are read.

/ready is unauthenticated and unthrottled, and each round costs a MySQL query and a
worker ping: calls within FRESH_FOR of a round share it (one round at a time).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from contracts.errors import ErrorCode
from gateway.errors import GatewayError
from gateway.services.ports import EventFeed, MessageBus, UserStore, Workers

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.5
#: Seconds a round of checks answers /ready for.
FRESH_FOR = 1.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


async def _check(name: str, probe: Callable[[], Awaitable[None]]) -> Check:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            await probe()
    except TimeoutError:
        return Check(name, False, f"no answer within {CHECK_TIMEOUT} s")
    except GatewayError as exc:
        return Check(name, False, exc.message)
    except Exception as exc:  # a check that fails unexpectedly is a failed check, not a 5000
        log.exception("readiness check %s failed", name)
        return Check(name, False, f"check failed: {type(exc).__name__}")
    return Check(name, True, "ok")


class Readiness:
    def __init__(
        self,
        bus: MessageBus,
        users: UserStore,
        workers: Workers,
        feed: EventFeed,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bus = bus
        self._users = users
        self._workers = workers
        self._feed = feed
        self._clock = clock  # monotonic: a wall clock stepped back served one round for hours
        self._round: asyncio.Future[list[Check]] | None = None
        self._round_at = 0.0

    async def _kafka(self) -> None:
        if not await self._bus.ready():
            raise GatewayError(ErrorCode.BUS_UNAVAILABLE, "producer not connected or topic unknown")

    async def _events(self) -> None:
        if not self._feed.ready():
            raise GatewayError(ErrorCode.BUS_UNAVAILABLE, f"events feed: {self._feed.status}")

    async def checks(self) -> list[Check]:
        """The latest round's checks: one in progress, or one begun FRESH_FOR ago or less
        (else a new round). A caller that goes away does not cancel the round."""
        now = self._clock()
        if self._round is None or (self._round.done() and now - self._round_at > FRESH_FOR):
            self._round, self._round_at = asyncio.ensure_future(self._check_all()), now
        return list(await asyncio.shield(self._round))

    async def _check_all(self) -> list[Check]:
        return list(
            await asyncio.gather(
                _check("kafka", self._kafka),
                _check("mysql", self._users.ping),
                _check("workers", self._workers.ping),
                _check("events", self._events),
            )
        )
