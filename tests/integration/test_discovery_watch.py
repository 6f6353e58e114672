"""ServiceWatch against real Consul: membership changes through blocking queries, and a
Consul outage.

The outage test stops and restarts a private Consul agent started with the
project's own infra code, never the shared one other tests use. How fast a change
reaches the watch is measured by bench/discovery_bench.py, not asserted here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import consul.aio
import pytest

import discovery.watch
from discovery import (
    BalancedClient,
    HealthReport,
    Instance,
    NoInstanceAvailable,
    Registrar,
    Registration,
    ServiceWatch,
    WatchNotReady,
)
from discovery.consul_api import open_consul
from infra.local import LocalSettings, Stack
from infra.processes.private import free_port
from infra.processes.private import private_consul as private_consul_stack
from infra.processes.stub import StubServer
from platform_common.retry import Backoff
from tests.support.waiting import WITHIN, eventually

#: How long one blocking query of the membership test may park in Consul: far longer
#: than any wait of the test, so a change seen at all was delivered by Consul waking
#: the query, never by its wait running out.
LONG_WAIT = "4m"


@pytest.fixture(scope="module")
def private_consul(
    infra: LocalSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with private_consul_stack(tmp_path_factory.mktemp("private-consul"), infra.cache_dir) as stack:
        yield stack


@pytest.fixture
async def watch_of(infra: LocalSettings) -> AsyncIterator[Callable[..., ServiceWatch]]:
    """Build watches that are stopped at the end of the test."""
    made: list[ServiceWatch] = []

    def make(service: str, url: str = infra.consul_url, **kwargs: object) -> ServiceWatch:
        watch = ServiceWatch(url, service, **kwargs)  # type: ignore[arg-type]
        made.append(watch)
        return watch

    yield make
    for watch in made:
        await watch.stop()


class BlockingQueries:
    """Spies on the watches' Consul clients: blocking queries in flight, and cancelled."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.cancelled = 0

    def open(self, url: str, token: str | None = None) -> consul.aio.Consul:
        client = open_consul(url, token)
        query = client.health.service

        async def spied(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("index") is None:  # the first, non-blocking query
                return await query(*args, **kwargs)
            self.in_flight += 1
            try:
                return await query(*args, **kwargs)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            finally:
                self.in_flight -= 1

        client.health.service = spied
        return client


@pytest.fixture
def blocking_queries(monkeypatch: pytest.MonkeyPatch) -> BlockingQueries:
    spy = BlockingQueries()
    monkeypatch.setattr(discovery.watch, "open_consul", spy.open)
    return spy


async def passing() -> HealthReport:
    return HealthReport.passing()


def ids(instances: tuple[Instance, ...]) -> set[str]:
    return {i.id for i in instances}


async def test_membership_changes_wake_the_blocking_query_and_reach_subscribers(
    infra: LocalSettings,
    unique: Callable[[str], str],
    watch_of: Callable[..., ServiceWatch],
    blocking_queries: BlockingQueries,
) -> None:
    service = unique("disc-watch")
    watch = watch_of(service, wait=LONG_WAIT)
    seen: list[set[str]] = []
    watch.subscribe(lambda instances: seen.append(ids(instances)))
    assert seen == [set()]  # called at once with the current (empty) set
    await watch.start()
    await watch.start()  # safe twice
    await watch.wait_ready(WITHIN)
    await eventually(lambda: blocking_queries.in_flight, what="the watch parked in Consul")

    reg = Registration(f"{service}-w1", "127.0.0.1", 6101, "1.0", service=service)
    registrar = Registrar(infra.consul_url, reg, passing, ttl=5.0)
    await registrar.start()
    try:
        await eventually(lambda: seen[-1] == {reg.instance_id}, what="the new instance")
        instance = watch.instances[0]
        assert (instance.address, instance.port) == ("127.0.0.1", 6101)
        assert instance.meta["version"] == "1.0"
        assert watch.stale_since is None
        await eventually(lambda: blocking_queries.in_flight, what="the watch parked again")
    finally:
        await registrar.stop()
    await eventually(lambda: not watch.instances, what="the instance gone from the watch")
    assert seen == [set(), {reg.instance_id}, set()]  # one call per change, nothing between

    # stop() cancels the blocking query in flight instead of waiting out its minutes.
    await eventually(lambda: blocking_queries.in_flight, what="the watch parked again")
    async with asyncio.timeout(WITHIN):
        await watch.stop()
        await watch.stop()
    assert (blocking_queries.cancelled, blocking_queries.in_flight) == (1, 0)


async def test_wait_ready_fails_clearly_when_consul_is_unreachable(
    unique: Callable[[str], str], watch_of: Callable[..., ServiceWatch]
) -> None:
    closed_port = free_port()
    watch = watch_of(unique("disc-nowhere"), f"http://127.0.0.1:{closed_port}")
    await watch.start()
    with pytest.raises(WatchNotReady, match=str(closed_port)):
        await watch.wait_ready(0.5)
    assert watch.instances == ()
    await eventually(lambda: watch.stale_since, what="the refused query noted")
    assert not watch.ready


async def test_consul_outage_keeps_the_last_set_serving_then_recovers(
    private_consul: Stack,
    unique: Callable[[str], str],
    watch_of: Callable[..., ServiceWatch],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = private_consul.settings.consul_url
    service = unique("disc-outage")
    server = StubServer()
    await server.start()
    reg = Registration(server.state.id, "127.0.0.1", server.port, "1.0", service=service)
    # The Registrar re-registers from its heartbeat, after the probe; holding the probe
    # lets the watch see the restarted agent's empty answer first, every time.
    beats = asyncio.Event()
    beats.set()

    async def held_passing() -> HealthReport:
        await beats.wait()
        return HealthReport.passing()

    registrar = Registrar(url, reg, held_passing, ttl=6.0, interval=2.0)
    watch = watch_of(service, url, wait="5s", backoff=Backoff(initial=0.05, maximum=0.2))
    client = BalancedClient(watch)
    await registrar.start()
    await watch.start()
    await client.start()
    try:
        await watch.wait_ready(WITHIN)
        assert ids(watch.instances) == {reg.instance_id}

        private_consul.kill("consul")
        stale_since = await eventually(lambda: watch.stale_since, what="the outage noticed")
        unreachable = f"consul unreachable for '{service}'"
        await eventually(
            lambda: caplog.text.count(unreachable), lambda n: n >= 5, what="five failed queries"
        )
        assert ids(watch.instances) == {reg.instance_id}, "an outage never empties the set"
        assert watch.stale_since == stale_since, "stale since the first failed query"
        for _ in range(20):
            assert (await client.request("GET", "/chats")).instance_id == reg.instance_id

        beats.clear()
        await asyncio.to_thread(private_consul.up, ["consul"])  # comes back knowing nothing
        await eventually(lambda: "right after coming back" in caplog.text, what="the empty answer")
        assert watch.stale_since is not None, "an empty answer is not believed right away"
        assert ids(watch.instances) == {reg.instance_id}
        beats.set()

        async def fresh_while_serving() -> bool:
            try:  # meanwhile the last known set keeps serving
                answer = await client.request("GET", "/chats")
            except NoInstanceAvailable as exc:
                raise AssertionError(f"the last known set stopped serving: {exc}") from exc
            assert answer.status == 200
            return watch.stale_since is None

        await eventually(fresh_while_serving, what="the watch fresh again")
        # Fresh again because the Registrar registered again by itself; until then the
        # empty answer of the amnesiac agent was not believed.
        assert ids(watch.instances) == {reg.instance_id}
        assert client.stats()[0].failures == 0
    finally:
        await client.stop()
        await registrar.stop()
        await server.stop()
