"""The gateway's worker client over the real Consul and HTTP: a 4xx-class answer is the
caller's problem, never the worker's, so it never ejects the worker; except a worker
refusing the gateway itself (401, 405, 413), which is the worker's failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.errors import ErrorCode, error_body
from contracts.ids import new_id
from discovery import (
    WORKER_META_APP_ID,
    WORKER_TAG,
    BalancedClient,
    HealthReport,
    Registrar,
    Registration,
    ServiceWatch,
)
from gateway.adapters.workers import REFUSALS, WorkerClient, pong_serves_reads
from gateway.errors import GatewayError
from infra.local import LocalSettings
from infra.processes.private import free_port
from tests.support.waiting import eventually

CLIENT_CODES = [code for code in ErrorCode if code.status < 500 and code.status not in REFUSALS]


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    hold: Callable[[], Awaitable[None]] | None = None  # awaited before answering
    pong: bytes | None = None  # the body of a 200 to GET /ping (None: as any other path)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _passing() -> HealthReport:
    return HealthReport.passing()


@dataclass
class FakeWorker:
    answer: Answer
    client: WorkerClient
    watch: ServiceWatch


@pytest.fixture(scope="module")
async def worker(infra: LocalSettings, unique: Callable[[str], str]) -> AsyncIterator[FakeWorker]:
    """An HTTP server registered as a dialogue worker, answering whatever `answer` says."""
    answer = Answer()

    async def handle(request: web.Request) -> web.Response:
        if answer.hold is not None:
            await answer.hold()
        if request.path == "/ping" and answer.pong is not None:
            return web.Response(body=answer.pong, content_type="application/json")
        return web.Response(status=answer.status, body=answer.body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    service = unique("w4xx")
    registration = Registration(
        f"{service}-1",
        "127.0.0.1",
        port,
        "1",
        service=service,
        tags=(WORKER_TAG,),
        meta={WORKER_META_APP_ID: "dialogue-worker"},
    )
    registrar = Registrar(infra.consul_url, registration, _passing)
    watch = ServiceWatch(
        infra.consul_url, service, require_tag=WORKER_TAG, require_meta={WORKER_META_APP_ID: None}
    )
    balanced = BalancedClient(watch, cooldown=60.0)
    await registrar.start()
    await watch.start()
    await balanced.start()
    try:
        await eventually(lambda: watch.instances, what="the fake worker in the watch")
        yield FakeWorker(answer, WorkerClient(balanced), watch)
    finally:
        await balanced.stop()
        await watch.stop()
        await registrar.stop()
        await runner.cleanup()


def _untouched(worker: FakeWorker) -> None:
    (view,) = worker.client.instances()
    assert view.healthy and view.failures == 0 and view.ejections == 0, view


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(code=st.sampled_from(CLIENT_CODES), message=st.text(max_size=200))
async def test_a_worker_error_of_the_client_class_passes_through_and_ejects_nothing(
    worker: FakeWorker, code: ErrorCode, message: str
) -> None:
    worker.answer.status, worker.answer.body = code.status, orjson.dumps(error_body(code, message))
    with pytest.raises(GatewayError) as caught:
        await worker.client.chat(1, new_id())
    assert caught.value.code is code
    _untouched(worker)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.integers(400, 499).filter(lambda s: s not in REFUSALS), body=st.binary(max_size=100)
)
async def test_any_4xx_answer_ejects_nothing(worker: FakeWorker, status: int, body: bytes) -> None:
    worker.answer.status, worker.answer.body = status, body
    with pytest.raises(GatewayError):
        await worker.client.chat(1, new_id())
    _untouched(worker)


async def test_a_5xx_answer_does_eject_the_worker(worker: FakeWorker) -> None:
    """The contrast that shows the tests above would see an ejection."""
    worker.answer.status, worker.answer.body = 500, b"{}"
    with pytest.raises(GatewayError) as caught:
        await worker.client.chat(1, new_id())
    assert caught.value.code is ErrorCode.NO_WORKER
    (view,) = worker.client.instances()
    assert view.ejections == 1 and not view.healthy


@pytest.mark.parametrize("code", [ErrorCode.BAD_TOKEN, ErrorCode.METHOD_NOT_ALLOWED])
async def test_a_worker_that_refuses_the_gateway_is_a_5030_and_is_ejected(
    worker: FakeWorker, code: ErrorCode
) -> None:
    """ENTRYPOINT_TOKEN differs (401), or another version of the worker (405): the
    client must not read the worker's 4011 as its own token refused. Its readmission
    probe gets the same answer, so it stays out (it was readmitted every cool-down)."""
    clock = Clock()
    balanced = BalancedClient(worker.watch, cooldown=60.0, refused=REFUSALS, clock=clock)
    await balanced.start()
    try:
        client = WorkerClient(balanced)
        worker.answer.status, worker.answer.body = (
            code.status,
            orjson.dumps(error_body(code, "bad entrypoint token")),
        )
        with pytest.raises(GatewayError) as caught:
            await client.chat(1, new_id())
        assert caught.value.code is ErrorCode.NO_WORKER
        (view,) = client.instances()
        assert view.ejections == 1 and not view.healthy

        clock.now += 61  # the cool-down is over: the next call sends the probe
        with pytest.raises(GatewayError):
            await client.chat(1, new_id())
        await eventually(lambda: client.instances()[0].ejections, lambda n: n == 2, what="probe")
        assert not client.instances()[0].healthy
    finally:
        await balanced.stop()


async def test_more_calls_in_flight_than_a_default_pool_holds_all_reach_the_worker(
    worker: FakeWorker,
) -> None:
    """aiohttp pools 100 connections by default, and a call waiting for one would time out
    and eject a healthy worker. 150 calls are held at the worker until all have arrived."""
    in_flight = 150
    arrived = 0
    all_in = asyncio.Event()

    async def hold() -> None:
        nonlocal arrived
        arrived += 1
        if arrived == in_flight:
            all_in.set()
        await all_in.wait()

    balanced = BalancedClient(worker.watch, request_timeout=5.0, deadline=5.0)
    await balanced.start()
    worker.answer.status, worker.answer.body, worker.answer.hold = 200, b"{}", hold
    try:
        answers = await asyncio.gather(
            *(balanced.request("GET", "/x") for _ in range(in_flight)), return_exceptions=True
        )
        assert [getattr(a, "status", a) for a in answers] == [200] * in_flight
        (stats,) = balanced.stats()
        assert stats.ejections == 0
    finally:
        all_in.set()
        worker.answer.hold = None
        await balanced.stop()


async def test_a_worker_whose_ping_says_critical_is_not_readmitted(worker: FakeWorker) -> None:
    """/ping answers 200 whatever the worker's health; the body says critical while its
    MongoDB is down, and such a worker stays out until it says otherwise."""
    clock = Clock()
    balanced = BalancedClient(
        worker.watch, cooldown=60.0, probe_healthy=pong_serves_reads, clock=clock
    )
    await balanced.start()
    try:
        client = WorkerClient(balanced)
        worker.answer.status, worker.answer.body = 503, b"{}"
        worker.answer.pong = orjson.dumps({"id": "w", "status": "critical", "reason": "mongo"})
        with pytest.raises(GatewayError):
            await client.chat(1, new_id())
        clock.now += 61
        with pytest.raises(GatewayError):
            await client.chat(1, new_id())  # sends the probe
        await eventually(lambda: client.instances()[0].ejections, lambda n: n == 2, what="probe")

        worker.answer.pong = orjson.dumps({"id": "w", "status": "passing", "reason": None})
        worker.answer.status, worker.answer.body = 200, b"{}"
        clock.now += 121  # the doubled cool-down
        with pytest.raises(GatewayError):
            await client.chat(1, new_id())  # still out; its probe readmits it
        await eventually(lambda: client.instances()[0].healthy, what="readmitted")
    finally:
        worker.answer.pong = None
        worker.answer.status, worker.answer.body = 200, b"{}"
        await balanced.stop()


@given(st.binary(max_size=200))
def test_any_ping_body_is_judged_without_raising(body: bytes) -> None:
    assert pong_serves_reads(body) in (True, False)
