"""Readiness: the Kafka producer, MySQL and at least one worker answer; events are read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from contracts.errors import ErrorCode
from gateway.errors import GatewayError
from gateway.services.ports import EventFeed, MessageBus, UserStore, Workers

CHECK_TIMEOUT = 2.5


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
    return Check(name, True, "ok")


class Readiness:
    def __init__(
        self, bus: MessageBus, users: UserStore, workers: Workers, feed: EventFeed
    ) -> None:
        self._bus = bus
        self._users = users
        self._workers = workers
        self._feed = feed

    async def _kafka(self) -> None:
        if not await self._bus.ready():
            raise GatewayError(ErrorCode.BUS_UNAVAILABLE, "producer not connected or topic unknown")

    async def _events(self) -> None:
        if not self._feed.ready():
            raise GatewayError(ErrorCode.BUS_UNAVAILABLE, f"events feed: {self._feed.status}")

    async def checks(self) -> list[Check]:
        return list(
            await asyncio.gather(
                _check("kafka", self._kafka),
                _check("mysql", self._users.ping),
                _check("workers", self._workers.ping),
                _check("events", self._events),
            )
        )
