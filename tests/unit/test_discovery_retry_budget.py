"""The retry budget: retries held to a share of recent first tries plus a floor, on a
fake clock; and through BalancedClient, a burst of failing reads against servers on
ephemeral ports sends no more than its first tries and the budget upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from discovery import BalancedClient, Instance, NoInstanceAvailable
from discovery.balancer import RetryBudget
from discovery.errors import DiscoveryError
from tests.support.static_watch import StaticWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def spend(budget: RetryBudget) -> int:
    """Send retries while the budget allows them; how many it allowed."""
    allowed = 0
    while budget.allows_retry():
        budget.sent(retry=True)
        allowed += 1
    return allowed


def first_tries(budget: RetryBudget, n: int) -> None:
    for _ in range(n):
        budget.sent(retry=False)


def test_the_floor_allows_retries_without_traffic() -> None:
    budget = RetryBudget(ratio=0.2, per_second=0.5, window=10, clock=Clock())
    assert spend(budget) == 5


def test_first_tries_earn_their_share_of_retries() -> None:
    budget = RetryBudget(ratio=0.2, per_second=0, window=10, clock=Clock())
    first_tries(budget, 4)
    assert spend(budget) == 0  # 0.8 of a retry: none yet
    first_tries(budget, 1)
    assert spend(budget) == 1
    first_tries(budget, 100)
    assert spend(budget) == 20


def test_tries_leave_the_budget_with_the_window() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, per_second=0, window=10, clock=clock)
    first_tries(budget, 50)
    clock.now += 5
    first_tries(budget, 50)
    assert spend(budget) == 20
    clock.now += 4.5  # the first 50 are 9.5 s old: still in the window
    assert spend(budget) == 0
    clock.now += 0.5  # 10 s old: they left the window; the 20 retries, 5 s old, stay
    assert spend(budget) == 0
    clock.now += 5  # everything left: nothing earned, nothing spent
    assert spend(budget) == 0
    first_tries(budget, 10)
    assert spend(budget) == 2


def test_retries_spent_in_a_burst_come_back_after_the_window() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, per_second=1, window=10, clock=clock)
    assert spend(budget) == 10
    clock.now += 9
    assert spend(budget) == 0
    clock.now += 1
    assert spend(budget) == 10


@pytest.mark.parametrize("kwargs", [{"ratio": -0.1}, {"per_second": -1}, {"window": 0}], ids=str)
def test_impossible_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def overloaded() -> AsyncIterator[tuple[list[Instance], list[int]]]:
    """Three servers on ephemeral 127.0.0.1 ports answering 503 to everything, and the
    number of requests each got."""
    hits = [0, 0, 0]
    runners, instances = [], []
    for i in range(len(hits)):

        async def handle(request: web.Request, i: int = i) -> web.Response:
            hits[i] += 1
            return web.json_response({}, status=503)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        instances.append(Instance(f"s{i}", "127.0.0.1", runner.addresses[0][1]))
    try:
        yield instances, hits
    finally:
        for runner in runners:
            await runner.cleanup()


async def test_a_burst_of_failing_reads_sends_its_first_tries_and_the_budget(
    overloaded: tuple[list[Instance], list[int]],
) -> None:
    """Without the budget each read tries all three servers: 3 x 40 calls."""
    instances, hits = overloaded
    reads, ratio, per_second, window = 40, 0.2, 0.5, 10
    client = BalancedClient(
        StaticWatch(instances, service="overloaded"),  # type: ignore[arg-type]
        attempts=3,
        deadline=60.0,  # no try is cut short on a loaded machine
        request_timeout=30.0,
        retry_ratio=ratio,
        min_retries_per_second=per_second,
        retry_window=window,
        clock=Clock(),  # one second: nothing leaves the window
    )
    await client.start()
    try:
        results = await asyncio.gather(
            *(client.request("GET", "/messages") for _ in range(reads)), return_exceptions=True
        )
    finally:
        await client.stop()

    budget = int(ratio * reads + per_second * window)  # 13 retries
    assert sum(hits) == reads + budget
    assert all(isinstance(r, NoInstanceAvailable) for r in results)
    # A read either tried all three servers (at most budget // 2 of them did) or says
    # the budget refused its retry.
    refused = [r for r in results if "retry budget spent" in str(r)]
    assert len(refused) >= reads - budget // 2


async def test_a_request_not_to_be_repeated_reaches_a_dropping_instance_once() -> None:
    """aiohttp sent PUT and DELETE again, on its own and to the same instance, when a
    kept-alive connection dropped under them, whatever `idempotent` said (found in
    review): a server on an ephemeral 127.0.0.1 port answers the first request, then
    drops the connection of every other one once it has read it."""
    hits: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(request.method)
        await request.read()
        if len(hits) > 1 and request.transport is not None:
            request.transport.close()
        return web.json_response({})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    instance = Instance("s", "127.0.0.1", runner.addresses[0][1])
    client = BalancedClient(
        StaticWatch([instance], service="dropping"),  # type: ignore[arg-type]
        attempts=3,
        deadline=60.0,
        request_timeout=30.0,
    )
    await client.start()
    try:
        await client.request("GET", "/warm")  # a connection kept alive
        for method in ("PUT", "DELETE"):
            with pytest.raises(DiscoveryError):  # the outcome is unknown: not sent again
                await client.request(method, "/members", json={}, idempotent=False)
    finally:
        await client.stop()
        await runner.cleanup()
    assert hits == ["GET", "PUT", "DELETE"]
