"""The worker's internal API against clients that send slowly or not at all: a request head
that never completes, and a body that never comes, end within their bounds (they held the
connection, and the handler, for ever). The API runs on the worker's own web server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dialogue_worker.adapters import faust_app as worker_web
from dialogue_worker.bootstrap import faust_app
from dialogue_worker.entrypoints import requests as worker_requests
from dialogue_worker.entrypoints.http import InternalApi
from dialogue_worker.entrypoints.middleware import edge_middleware
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.chats import ChatService
from dialogue_worker.services.health import WorkerHealth
from dialogue_worker.settings import WorkerSettings
from discovery.client import POOL_IDLE
from infra.processes.private import free_port
from tests.support.raw_http import parse, read_to_close
from tests.support.worker_fakes import MemoryOutbox, MemoryStore

TOKEN = "entrypoint-secret"
WITHIN = 0.5


@pytest.fixture
async def port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    monkeypatch.setattr(worker_web, "HEAD_WITHIN", WITHIN)
    monkeypatch.setattr(worker_requests, "BODY_WITHIN", WITHIN)
    store = MemoryStore()
    settings = WorkerSettings(
        dialogue_env="local",
        data_dir=tmp_path,
        worker_port=free_port(),
        kafka_bootstrap="127.0.0.1:9",  # discard: nothing here talks to Kafka
    )
    web_server = faust_app(settings).web
    app = web_server.web_app
    app.middlewares.append(edge_middleware(TOKEN, WorkerMetrics(), 10.0))
    health = WorkerHealth(store.ping, dict, stall_after=30.0)
    chats = ChatService(store, MemoryOutbox())
    InternalApi(chats, health, WorkerMetrics(), "w-1").install(app)
    await web_server.start_server()
    try:
        yield settings.worker_port
    finally:
        await web_server.stop_server()


async def _answer(port: int, sent: bytes) -> bytes:
    """What the worker sends after `sent`, read until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(sent)
        async with asyncio.timeout(10):
            return await read_to_close(reader)
    finally:
        writer.close()


@pytest.mark.parametrize("sent", [b"", b"GET /chats?uid=1 HTTP/1.1\r\nHost: x\r\n"])
async def test_a_connection_without_a_complete_head_is_closed(port: int, sent: bytes) -> None:
    assert await _answer(port, sent) == b""


async def test_a_body_that_never_comes_is_4080_and_the_connection_closes(port: int) -> None:
    head = (
        b"POST /chats HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Entrypoint " + TOKEN.encode() + b"\r\nContent-Length: 2000\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + b'{"us')
        async with asyncio.timeout(10):
            answer = await reader.readuntil(b"\r\n\r\n")
            length = int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            answer += await reader.readexactly(length)
    finally:
        writer.close()
    response = parse(answer)
    assert response is not None and response.status == 408
    assert response.json()["code"] == "4080"
    assert response.headers["connection"].lower() == "close"


def test_the_worker_waits_for_a_head_longer_than_the_gateway_keeps_a_connection_idle() -> None:
    """Else the gateway could send a read on a pooled connection the worker is closing."""
    assert worker_web.HEAD_WITHIN > POOL_IDLE
