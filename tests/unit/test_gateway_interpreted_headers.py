"""Headers aiohttp acts on before the app's middlewares (Expect, the WebSocket handshake)
get the platform's JSON error, never aiohttp's plain text or a 5000 with a traceback."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.entrypoints.server import GatewayRunner
from gateway.settings import GatewaySettings
from tests.support.gateway_fakes import World

INTERPRETED = [
    "Expect",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
]


@asynccontextmanager
async def _gateway() -> AsyncIterator[int]:
    app = create_app(GatewaySettings(dialogue_env="local"), adapters=World().adapters)
    runner = GatewayRunner(app, max_connections=100, header_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _raw(port: int, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: gateway\r\n"
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        writer.write(head + b"Content-Length: 0\r\n\r\n")
        answer = await reader.read(65536)
    finally:
        writer.close()
    while answer.startswith(b"HTTP/1.1 100 "):  # an interim answer to Expect: 100-continue
        answer = answer.partition(b"\r\n\r\n")[2]
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split(b" ", 2)[1]), rest.partition(b"\r\n\r\n")[2]


# Visible ASCII and obs-text (0x80-0xFF): what a client may put in a header value.
_VALUE = st.binary(min_size=1, max_size=40).filter(
    lambda b: all(c >= 0x21 and c != 0x7F for c in b)
)


@given(
    name=st.sampled_from(INTERPRETED),
    value=_VALUE,
    path=st.sampled_from(["/v1/stream", "/health", "/nowhere"]),
)
@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_any_value_of_a_header_aiohttp_interprets_gets_a_json_answer(
    name: str, value: bytes, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()
    async with _gateway() as port:
        status, body = await _raw(port, path, [(name.encode(), value)])
    assert status < 500, body
    if not value.isascii():
        assert json.loads(body)["code"] == "4000"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_expect_other_than_100_continue_is_4000_in_json() -> None:
    async with _gateway() as port:
        status, body = await _raw(port, "/health", [(b"Expect", b"something-else")])
        assert (status, json.loads(body)["code"]) == (400, "4000")
        status, _ = await _raw(port, "/health", [(b"Expect", b"100-continue")])
        assert status == 200
