"""Headers aiohttp acts on before the app's middlewares (Expect, the WebSocket handshake)
get the platform's JSON error, never aiohttp's plain text or a 5000 with a traceback."""

from __future__ import annotations

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
from platform_common.http_server import INTERPRETED
from tests.support.gateway_fakes import World
from tests.support.raw_http import exchange, request


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
        answer = await request(port, "GET", path, [(name.encode(), value)])
    assert answer.status < 500, answer
    if not value.isascii():
        assert answer.json()["code"] == "4000"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_expect_other_than_100_continue_is_4000_in_json() -> None:
    async with _gateway() as port:
        refused = await request(port, "GET", "/health", [(b"Expect", b"something-else")])
        assert (refused.status, refused.json()["code"]) == (400, "4000")
        assert refused.headers["server"] == "dialogue-gateway"  # the server's own answer too
        met = await request(port, "GET", "/health", [(b"Expect", b"100-continue")])
        assert met.status == 200


async def test_an_expect_aiohttp_ignores_is_ignored() -> None:
    """Empty, or on HTTP/1.0: aiohttp's own handler lets both through."""
    async with _gateway() as port:
        empty = await request(port, "GET", "/health", [(b"Expect", b"")])
        assert empty.status == 200
        old = await exchange(
            port, b"GET /health HTTP/1.0\r\nExpect: something-else\r\nConnection: close\r\n\r\n"
        )
        assert old is not None and old.status == 200
