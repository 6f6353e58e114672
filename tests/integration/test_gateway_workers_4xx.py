"""The gateway's worker client over the real Consul and HTTP: a 4xx-class answer is the
caller's problem, never the worker's, so it never ejects the worker; except a worker
refusing the gateway itself (401, 405, 413), which is the worker's failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.api import Chat
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
from gateway.adapters.workers import (
    REFUSALS,
    WorkerClient,
    pong_serves_reads,
)
from gateway.bootstrap import worker_balancer
from gateway.errors import GatewayError
from gateway.settings import GatewaySettings
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


async def _serve(handle: Callable[[web.Request], Awaitable[web.Response]]) -> tuple[Any, int]:
    """An HTTP server on a free loopback port answering every path with `handle`."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def _registrar(infra: LocalSettings, service: str, instance_id: str, port: int) -> Registrar:
    registration = Registration(
        instance_id,
        "127.0.0.1",
        port,
        "1",
        service=service,
        tags=(WORKER_TAG,),
        meta={WORKER_META_APP_ID: "dialogue-worker"},
    )
    return Registrar(infra.consul_url, registration, _passing)


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

    runner, port = await _serve(handle)
    service = unique("w4xx")
    registrar = _registrar(infra, service, f"{service}-1", port)
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


@asynccontextmanager
async def healthy_peer(infra: LocalSettings, worker: FakeWorker) -> AsyncIterator[str]:
    """A second instance of the fake worker's service that answers 200 to everything:
    calls go to it while the first is ejected, so only probes reach the first."""

    async def handle(request: web.Request) -> web.Response:
        if request.path == "/ping":
            return web.json_response({"id": "peer", "status": "passing", "reason": None})
        cid = request.path.rsplit("/", 1)[-1]  # GET /chats/{cid}, what the tests call
        return web.json_response(Chat(id=cid, users=[1], createdAt=1).model_dump())

    runner, port = await _serve(handle)
    registrar = _registrar(infra, worker.watch.service, f"{worker.watch.service}-peer", port)
    await registrar.start()
    try:
        await eventually(lambda: len(worker.watch.instances) == 2, what="the peer in the watch")
        yield registrar.registration.instance_id
    finally:
        await registrar.stop()
        await runner.cleanup()
        await eventually(lambda: len(worker.watch.instances) == 1, what="the peer gone")


def _view(client: WorkerClient, instance_id: str) -> Any:
    return next(v for v in client.instances() if v.id == instance_id)


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


#: The gateway's own settings for its workers, but a cool-down that outlasts a test.
AS_THE_GATEWAY = GatewaySettings(dialogue_env="local", upstream_cooldown=60)
FAULTS_TO_EJECT = AS_THE_GATEWAY.upstream_faults_to_eject


@asynccontextmanager
async def _as_the_gateway(worker: FakeWorker) -> AsyncIterator[WorkerClient]:
    """A client of its own, made as the gateway makes it: the module's shared one stays
    unejected for the tests that follow, and the answer is reset however this ends."""
    balanced = worker_balancer(AS_THE_GATEWAY, worker.watch)
    await balanced.start()
    try:
        yield WorkerClient(balanced)
    finally:
        worker.answer.status, worker.answer.body = 200, b"{}"
        await balanced.stop()


async def test_a_read_answered_with_a_body_that_is_not_its_shape_moves_on_to_a_peer(
    worker: FakeWorker, infra: LocalSettings
) -> None:
    """Found in review: a worker answering 200 with a body that is not the route's answer
    (HTML, another version's shape) was counted a success and kept its share of reads,
    each failing with 5000. It is now the worker's failure: the read is answered by the
    peer, and the broken worker sits out."""
    async with _as_the_gateway(worker) as client, healthy_peer(infra, worker) as peer:
        worker.answer.status, worker.answer.body = 200, b"<html>not a chat</html>"
        for _ in range(4):
            chat = await client.chat(1, new_id())
            assert chat.users == [1]
        broken = next(v for v in client.instances() if v.id != peer)
        assert broken.ejections == 1 and not broken.healthy


async def test_a_5xx_answer_does_eject_the_worker(worker: FakeWorker) -> None:
    """The contrast that shows the tests above would see an ejection."""
    async with _as_the_gateway(worker) as client:
        worker.answer.status, worker.answer.body = 500, b"{}"
        with pytest.raises(GatewayError) as caught:
            await client.chat(1, new_id())
        assert caught.value.code is ErrorCode.NO_WORKER
        (view,) = client.instances()
        assert view.ejections == 1 and not view.healthy


async def test_a_worker_whose_handler_failed_is_passed_on_and_ejected_only_in_the_end(
    worker: FakeWorker,
) -> None:
    """Its 5000 (the request hit a bug) reaches the client as 5000, not as "no worker
    available", and ejects the worker only when it answers so UPSTREAM_FAULTS_TO_EJECT
    times in a row: one such request used to eject every worker its tries reached."""
    async with _as_the_gateway(worker) as client:
        worker.answer.status = ErrorCode.INTERNAL.status
        worker.answer.body = orjson.dumps(error_body(ErrorCode.INTERNAL, "internal error"))
        for n in range(1, FAULTS_TO_EJECT + 1):
            with pytest.raises(GatewayError) as caught:
                await client.chat(1, new_id())
            assert caught.value.code is ErrorCode.INTERNAL
            (view,) = client.instances()
            assert view.failures == n and view.healthy == (n < FAULTS_TO_EJECT), view


async def test_a_worker_saying_the_bus_is_down_is_passed_on_and_not_ejected(
    worker: FakeWorker,
) -> None:
    """Its 5031 (a new chat, members or a marker whose event Kafka did not take) is the
    client's answer; the worker still serves reads. Taken for the worker's failure, it
    ejected every worker in turn and ended as 5030, or 'may or may not be applied'."""
    async with _as_the_gateway(worker) as client:
        worker.answer.status = ErrorCode.BUS_UNAVAILABLE.status
        worker.answer.body = orjson.dumps(error_body(ErrorCode.BUS_UNAVAILABLE, "bus down"))
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: client.create_chat([1, 2]),
            lambda: client.mark_read(1, new_id(), 3),
            lambda: client.add_users(1, new_id(), [3]),
        ]
        for call in calls:
            with pytest.raises(GatewayError) as caught:
                await call()
            assert caught.value.code is ErrorCode.BUS_UNAVAILABLE
        (view,) = client.instances()
        assert view.healthy and view.ejections == 0 and view.requests == 3, view
        # The same status with another code is the worker's own failure.
        worker.answer.body = orjson.dumps(error_body(ErrorCode.NO_WORKER, "storage down"))
        with pytest.raises(GatewayError):
            await client.mark_read(1, new_id(), 3)
        (view,) = client.instances()
        assert view.ejections == 1 and not view.healthy


@pytest.mark.parametrize("code", [ErrorCode.BAD_TOKEN, ErrorCode.METHOD_NOT_ALLOWED])
async def test_a_worker_that_refuses_the_gateway_is_a_5030_and_is_ejected(
    worker: FakeWorker, code: ErrorCode
) -> None:
    """ENTRYPOINT_TOKEN differs (401), or another version of the worker (405): the
    client must not read the worker's 4011 as its own token refused."""
    balanced = BalancedClient(worker.watch, cooldown=60.0, refused=REFUSALS)  # as the gateway
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
    finally:
        await balanced.stop()


async def test_a_refusing_worker_stays_out_after_its_probe(
    worker: FakeWorker, infra: LocalSettings
) -> None:
    """Its readmission probe gets the same 401: it stays out (it was readmitted every
    cool-down). Calls go to a healthy peer meanwhile, so only the probe reaches it."""
    clock = Clock()
    balanced = BalancedClient(worker.watch, cooldown=60.0, refused=REFUSALS, clock=clock)
    await balanced.start()
    sick = next(i.id for i in worker.watch.instances)
    try:
        client = WorkerClient(balanced)
        worker.answer.status = ErrorCode.BAD_TOKEN.status
        worker.answer.body = orjson.dumps(error_body(ErrorCode.BAD_TOKEN, "bad token"))
        with pytest.raises(GatewayError):
            await client.chat(1, new_id())
        async with healthy_peer(infra, worker):
            clock.now += 61  # the cool-down is over: the next call sends the probe
            await client.chat(1, new_id())  # served by the peer
            await eventually(lambda: _view(client, sick).ejections, lambda n: n == 2)
            assert not _view(client, sick).healthy
    finally:
        worker.answer.status, worker.answer.body = 200, b"{}"
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


async def test_a_worker_whose_ping_says_critical_is_not_readmitted(
    worker: FakeWorker, infra: LocalSettings
) -> None:
    """/ping answers 200 whatever the worker's health; the body says critical while its
    MongoDB is down, and such a worker stays out until it says otherwise. Calls go to a
    healthy peer meanwhile, so only the probes reach it."""
    clock = Clock()
    balanced = BalancedClient(
        worker.watch, cooldown=60.0, probe_healthy=pong_serves_reads, clock=clock
    )
    await balanced.start()
    sick = next(i.id for i in worker.watch.instances)
    try:
        client = WorkerClient(balanced)
        worker.answer.status, worker.answer.body = 503, b"{}"
        worker.answer.pong = orjson.dumps({"id": "w", "status": "critical", "reason": "mongo"})
        with pytest.raises(GatewayError):
            await client.chat(1, new_id())
        async with healthy_peer(infra, worker):
            clock.now += 61
            await client.chat(1, new_id())  # served by the peer; sends the probe
            await eventually(lambda: _view(client, sick).ejections, lambda n: n == 2)
            assert not _view(client, sick).healthy

            worker.answer.pong = orjson.dumps({"id": "w", "status": "warning", "reason": "x"})
            clock.now += 121  # the doubled cool-down
            await client.chat(1, new_id())  # the peer again; the probe readmits the first
            await eventually(lambda: _view(client, sick).healthy, what="readmitted")
            assert _view(client, sick).ejections == 2
    finally:
        worker.answer.pong = None
        worker.answer.status, worker.answer.body = 200, b"{}"
        await balanced.stop()


async def test_readiness_takes_a_critical_pong_for_no_worker(
    worker: FakeWorker, infra: LocalSettings
) -> None:
    """/ping answers 200 whatever the worker's health; /ready said ready for a worker
    whose body says it cannot serve reads (MongoDB unreachable), and, asking one worker
    only, flapped while another served."""
    try:
        worker.answer.pong = orjson.dumps({"id": "w", "status": "critical", "reason": "mongo"})
        with pytest.raises(GatewayError) as caught:
            await worker.client.ping()
        assert caught.value.code is ErrorCode.NO_WORKER
        # /ready answers anyone: no instance id (a worker's address) in what it says.
        assert caught.value.message == "no worker serves reads"
        async with healthy_peer(infra, worker):
            for _ in range(4):  # whichever instance the round robin asks first
                await worker.client.ping()
        worker.answer.pong = orjson.dumps({"id": "w", "status": "warning", "reason": "stuck"})
        await worker.client.ping()
    finally:
        worker.answer.pong = None
