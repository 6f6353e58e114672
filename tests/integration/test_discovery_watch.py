"""ServiceWatch against real Consul: fast membership changes, and a Consul outage.

The outage test stops and restarts a private Consul agent started with the
project's own infra code, never the shared one other tests use.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from discovery import (
    Backoff,
    BalancedClient,
    HealthReport,
    Instance,
    Registrar,
    Registration,
    ServiceWatch,
    WatchNotReady,
)
from infra.local import LocalSettings, Stack
from infra.processes.private import private_consul as private_consul_stack
from infra.processes.stub import StubServer


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


async def passing() -> HealthReport:
    return HealthReport.passing()


async def until(condition: Callable[[], bool], within: float) -> None:
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


def ids(instances: tuple[Instance, ...]) -> set[str]:
    return {i.id for i in instances}


async def test_membership_changes_reach_subscribers_within_a_second(
    infra: LocalSettings, unique: Callable[[str], str], watch_of: Callable[..., ServiceWatch]
) -> None:
    service = unique("disc-watch")
    watch = watch_of(service)
    seen: list[tuple[float, set[str]]] = []
    watch.subscribe(lambda instances: seen.append((time.monotonic(), ids(instances))))
    assert seen[0][1] == set()  # called at once with the current (empty) set
    await watch.start()
    await watch.start()  # safe twice
    await watch.wait_ready(5)
    await asyncio.sleep(0.3)  # the watch is now parked in a blocking query

    reg = Registration(f"{service}-w1", "127.0.0.1", 6101, "1.0", service=service)
    registrar = Registrar(infra.consul_url, reg, passing, ttl=5.0)
    t0 = time.monotonic()
    await registrar.start()
    try:
        await until(lambda: seen[-1][1] == {reg.instance_id}, within=5)
        appeared = seen[-1][0] - t0
        assert appeared < 1.5, f"new instance reached the watch after {appeared:.3f}s"
        instance = watch.instances[0]
        assert (instance.address, instance.port) == ("127.0.0.1", 6101)
        assert instance.meta["version"] == "1.0"
        assert watch.stale_since is None
    finally:
        t1 = time.monotonic()
        await registrar.stop()
    await until(lambda: not watch.instances, within=5)
    assert seen[-1][0] - t1 < 1.5

    # stop() cancels a blocking query in flight without waiting for it.
    async with asyncio.timeout(2):
        await watch.stop()
        await watch.stop()


async def test_wait_ready_fails_clearly_when_consul_is_unreachable(
    unique: Callable[[str], str], watch_of: Callable[..., ServiceWatch]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    watch = watch_of(unique("disc-nowhere"), f"http://127.0.0.1:{closed_port}")
    await watch.start()
    with pytest.raises(WatchNotReady, match=str(closed_port)):
        await watch.wait_ready(0.5)
    assert watch.instances == ()
    assert watch.stale_since is not None and not watch.ready


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
        await watch.wait_ready(5)
        assert ids(watch.instances) == {reg.instance_id}

        private_consul.kill("consul")
        await until(lambda: watch.stale_since is not None, within=10)
        await asyncio.sleep(1.0)
        assert ids(watch.instances) == {reg.instance_id}, "an outage never empties the set"
        assert time.monotonic() - watch.stale_since >= 1.0
        for _ in range(20):
            assert (await client.request("GET", "/chats")).instance_id == reg.instance_id

        beats.clear()
        await asyncio.to_thread(private_consul.up, ["consul"])  # comes back knowing nothing
        await until(lambda: "right after coming back" in caplog.text, within=10)
        assert watch.stale_since is not None, "an empty answer is not believed right away"
        assert ids(watch.instances) == {reg.instance_id}
        beats.set()
        async with asyncio.timeout(10):
            while watch.stale_since is not None:
                # Meanwhile the last known set keeps serving.
                assert (await client.request("GET", "/chats")).status == 200
                await asyncio.sleep(0.05)
        # Fresh again because the Registrar registered again by itself; until then the
        # empty answer of the amnesiac agent was not believed.
        assert ids(watch.instances) == {reg.instance_id}
        assert client.stats()[0].failures == 0
    finally:
        await client.stop()
        await registrar.stop()
        await server.stop()
