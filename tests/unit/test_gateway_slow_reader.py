"""A client that stops reading its answers loses its connection after SEND_WITHIN, so it
cannot hold a connection slot, a handler and the answers' buffers for ever."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from gateway.app import create_app
from gateway.entrypoints.server import GatewayRunner
from gateway.settings import GatewaySettings
from tests.support.gateway_fakes import World
from tests.support.waiting import eventually

#: Pipelined requests for the largest answer: far more than the socket buffers hold.
REQUESTS = 60


@asynccontextmanager
async def _gateway(send_within: float) -> AsyncIterator[tuple[GatewayRunner, int]]:
    app = create_app(GatewaySettings(dialogue_env="local"), adapters=World().adapters)
    runner = GatewayRunner(app, max_connections=100, header_timeout=30, send_within=send_within)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner, runner.addresses[0][1]
    finally:
        await runner.cleanup()


def _slow_reader(port: int) -> socket.socket:
    """A connection that asks for the OpenAPI document REQUESTS times and reads nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    head = b"GET /v1/openapi.json HTTP/1.1\r\nHost: gateway\r\n\r\n"
    sock.sendall(head * REQUESTS)
    return sock


async def test_a_client_that_stops_reading_is_cut_off() -> None:
    async with _gateway(send_within=1.0) as (runner, port):
        sock = _slow_reader(port)
        try:
            await eventually(lambda: runner.cap.open == 1, what="the connection admitted")
            # It is aborted once an answer has waited a second for the client.
            await eventually(lambda: runner.cap.open == 0, what="the connection aborted")
        finally:
            sock.close()


async def test_a_client_that_reads_gets_every_answer() -> None:
    async with _gateway(send_within=1.0) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = b"GET /v1/openapi.json HTTP/1.1\r\nHost: gateway\r\n\r\n"
        writer.write(head * 3)
        answers = 0
        try:
            while answers < 3:
                status = await reader.readline()
                assert status.startswith(b"HTTP/1.1 200"), status
                length = 0
                while (line := await reader.readline()) != b"\r\n":
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                answers += 1
        finally:
            writer.close()
        assert answers == 3
