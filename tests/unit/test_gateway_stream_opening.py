"""A stream between hello and the end of its catch-up: the socket is read all along
(pings, the client's close), and an opening cut short is no HTTP error."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from contracts.live import CloseCode, Followed
from gateway.app import create_app
from gateway.domain.tokens import TokenCodec
from gateway.entrypoints.state import SERVICES
from gateway.settings import GatewaySettings
from platform_common.local import LOCAL_JWT_SECRET
from tests.support.gateway_fakes import World
from tests.support.waiting import WITHIN, eventually

Client = TestClient[web.Request, web.Application]
ADMIN = {"Authorization": "Bearer local-only-admin-token"}


class HeldListing:
    """The workers' chat listing, held until released: a slow listing or catch-up."""

    def __init__(self, listing: Callable[[int], Awaitable[Followed]]) -> None:
        self._listing = listing
        self.release = asyncio.Event()
        self.waiting = 0
        self.cancelled = 0

    async def followed(self, uid: int) -> Followed:
        self.waiting += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return await self._listing(uid)


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def held(world: World, monkeypatch: pytest.MonkeyPatch) -> HeldListing:
    held = HeldListing(world.workers.followed)
    monkeypatch.setattr(world.workers, "followed", held.followed)
    return held


@pytest.fixture
async def client(world: World) -> AsyncIterator[Client]:
    settings = GatewaySettings(dialogue_env="local")
    async with TestClient(TestServer(create_app(settings, adapters=world.adapters))) as client:
        yield client


def _hello(ttl: int = 3600, now: float | None = None) -> str:
    codec = TokenCodec(LOCAL_JWT_SECRET, "dialogue-gateway", ttl)
    token = codec.issue(7, "someone", time.time() if now is None else now).token
    return orjson.dumps({"type": "hello", "token": token, "since": {}}).decode()


async def _metrics(client: Client) -> str:
    return await (await client.get("/metrics", headers=ADMIN)).text()


async def test_a_ping_during_the_catch_up_is_answered(client: Client, held: HeldListing) -> None:
    """The socket was not read until the catch-up ended (up to 70 s): a client's ping
    went unanswered, and a client that times its pings out closed the stream."""
    ws = await client.ws_connect("/v1/stream", autoping=False)
    await ws.send_str(_hello())
    await eventually(lambda: held.waiting, what="the chats being listed")
    await ws.ping(b"are you there")
    pong = await ws.receive(timeout=WITHIN)
    while pong.type is WSMsgType.PING:  # the server's heartbeat: not what is asked here
        pong = await ws.receive(timeout=WITHIN)
    assert (pong.type, pong.data) == (WSMsgType.PONG, b"are you there")
    held.release.set()
    ready = await ws.receive(timeout=WITHIN)
    assert orjson.loads(ready.data)["type"] == "ready"
    await ws.close()


async def test_a_close_during_the_catch_up_ends_it(client: Client, held: HeldListing) -> None:
    """The client's close was ignored until the catch-up ended: its slot and session
    stayed taken for the whole catch-up."""
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(_hello())
    await eventually(lambda: held.waiting, what="the chats being listed")
    await ws.close()
    hub = client.server.app[SERVICES].stream.hub
    await eventually(lambda: (held.cancelled, hub.sessions), lambda v: v == (1, 0))
    text = await eventually(lambda: _metrics(client), lambda t: "stream_closes_total{" in t)
    assert 'gateway_stream_closes_total{code="1000"} 1.0' in text


def _no_http_answer(text: str) -> None:
    """No HTTP error answer after the upgrade, and no request duration."""
    assert 'route="/v1/stream",status="400"}' not in text
    assert 'gateway_errors_total{code="4000"}' not in text
    assert 'gateway_http_request_duration_seconds_count{route="/v1/stream"}' not in text


async def test_a_token_expiring_during_the_catch_up_closes_it_and_nothing_else(
    client: Client, held: HeldListing
) -> None:
    """Its catch-up then wrote to a closed socket: the ConnectionError became an HTTP
    400 counted with a request duration."""
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(_hello(ttl=60, now=time.time() - 57))  # three seconds left
    await eventually(lambda: held.waiting, what="the chats being listed")
    closed = await ws.receive(timeout=WITHIN)
    assert closed.type is WSMsgType.CLOSE and ws.close_code == CloseCode.TOKEN_EXPIRED
    held.release.set()  # a listing that was not cancelled goes on to write
    text = await eventually(
        lambda: _metrics(client), lambda t: 'stream_closes_total{code="4002"} 1.0' in t
    )
    _no_http_answer(text)
    assert held.cancelled == 1


async def test_a_catch_up_cut_by_the_connection_is_a_debug_line(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A send that finds the connection broken ends the stream; it is no server error."""

    async def cut(*args: Any) -> None:
        raise ConnectionResetError("Cannot write to closing transport")

    monkeypatch.setattr(client.server.app[SERVICES].stream, "open", cut)
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(_hello())
    closed = await ws.receive(timeout=WITHIN)
    assert closed.type is WSMsgType.CLOSE and ws.close_code == CloseCode.TRY_AGAIN
    text = await eventually(
        lambda: _metrics(client), lambda t: 'stream_closes_total{code="1013"} 1.0' in t
    )
    _no_http_answer(text)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
