"""/ready's worker ping (WorkerClient.ping) judges a pong as the readmission probe does.

A worker's /ping answers 200 whatever its health, the health in the body. The ping used
to count any such 200 as the worker's success: once every worker was ejected, /ready,
which anyone may poll, put a worker whose pong said `critical` back into rotation and
reset its doubling cool-down. Two aiohttp servers on ephemeral ports stand in for the
workers, a static set for Consul.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from contracts.errors import ErrorCode
from discovery import BalancedClient, Instance, InstanceStats
from gateway.adapters.workers import REFUSALS, WorkerClient, pong_serves_reads
from gateway.errors import GatewayError
from tests.support.static_watch import StaticWatch

CID = "6b09efabc53ed4e0ac355646"
COOLDOWN = 5.0


class Clock:
    """The balancer's clock, moved only by the test: no cool-down ends unless told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeWorker:
    """A worker whose pong says `pong` (200, the health in the body, as a real one
    answers) and whose reads answer `reads`: 500 unless a test says otherwise."""

    id: str
    pong: str = "critical"
    reads: int = 500
    hits: Counter[str] = field(default_factory=Counter)

    async def handle(self, request: web.Request) -> web.Response:
        self.hits[request.path] += 1
        if request.path == "/ping":
            body = {"id": self.id, "status": self.pong, "reason": "MongoDB unreachable"}
            return web.json_response(body)
        return web.json_response({}, status=self.reads)


@dataclass
class Gateway:
    """The gateway's side: its WorkerClient over a BalancedClient built as bootstrap does."""

    workers: list[FakeWorker]
    client: WorkerClient
    balanced: BalancedClient
    clock: Clock

    def stats(self, worker: FakeWorker) -> InstanceStats:
        return next(s for s in self.balanced.stats() if s.id == worker.id)


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    workers = [FakeWorker("w0"), FakeWorker("w1")]
    runners, instances = [], []
    for worker in workers:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", worker.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        instances.append(Instance(worker.id, "127.0.0.1", runner.addresses[0][1]))
    clock = Clock()
    balanced = BalancedClient(
        StaticWatch(instances),  # type: ignore[arg-type]
        cooldown=COOLDOWN,
        refused=REFUSALS,
        probe_healthy=pong_serves_reads,
        clock=clock,
    )
    await balanced.start()
    try:
        yield Gateway(workers, WorkerClient(balanced), balanced, clock)
    finally:
        await balanced.stop()
        for runner in runners:
            await runner.cleanup()


async def eject_all(gateway: Gateway) -> None:
    """A read that every worker answers with 500: each is ejected for COOLDOWN."""
    with pytest.raises(GatewayError):
        await gateway.client.chat(1, CID)
    assert [(s.healthy, s.ejections) for s in gateway.balanced.stats()] == [(False, 1)] * 2


async def test_pings_do_not_readmit_workers_whose_pong_says_critical(gateway: Gateway) -> None:
    await eject_all(gateway)
    ejected_until = [s.ejected_until for s in gateway.balanced.stats()]

    for _ in range(3):  # /ready polled
        with pytest.raises(GatewayError) as caught:
            await gateway.client.ping()
        assert caught.value.code is ErrorCode.NO_WORKER
        assert caught.value.message == "no worker serves reads"

    stats = gateway.balanced.stats()
    assert [s.healthy for s in stats] == [False, False]
    assert [s.ejected_until for s in stats] == ejected_until  # no cool-down ended or reset
    # Each ping asked each worker once, in turn (it used to ask one of them twice).
    assert [w.hits["/ping"] for w in gateway.workers] == [3, 3]


@pytest.mark.parametrize("pong", ["passing", "warning"])
async def test_a_ping_whose_pong_serves_reads_readmits_and_keeps_the_doubling(
    gateway: Gateway, pong: str
) -> None:
    """A pong saying the worker serves reads is the probe's evidence: it readmits the
    worker, but only a served read resets its doubling cool-down."""
    await eject_all(gateway)
    w0, w1 = gateway.workers
    w0.pong = pong

    await gateway.client.ping()
    assert gateway.stats(w0).healthy and not gateway.stats(w1).healthy

    with pytest.raises(GatewayError):  # its reads still fail: ejected again, for twice as long
        await gateway.client.chat(1, CID)
    assert gateway.stats(w0).ejections == 2
    assert gateway.stats(w0).ejected_until == gateway.clock.now + 2 * COOLDOWN


async def test_a_ping_ejects_a_worker_in_rotation_whose_pong_says_critical(
    gateway: Gateway,
) -> None:
    """The next worker is asked and answers for the ping; reads then skip the critical
    one (it used to stay in rotation, its pong taken for a success)."""
    w0, w1 = gateway.workers
    w1.pong, w1.reads = "passing", 200

    await gateway.client.ping()
    assert [w.hits["/ping"] for w in gateway.workers] == [1, 1]
    assert not gateway.stats(w0).healthy and gateway.stats(w1).healthy

    reads = [await gateway.balanced.request("GET", f"/chats/{CID}") for _ in range(4)]
    assert [r.instance_id for r in reads] == ["w1"] * 4
    assert w0.hits[f"/chats/{CID}"] == 0
