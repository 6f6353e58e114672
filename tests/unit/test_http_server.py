"""platform_common/http_server.py: the runner that answers aiohttp's own refusals in JSON
keeps the protocol settings an application gives aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from platform_common.http_server import JsonRefusingRunner, parser_problem

LONG_PATH = "/" + "a" * 10_000  # past aiohttp's default request-line limit, 8,190


@contextlib.asynccontextmanager
async def _serving(app: web.Application) -> AsyncIterator[int]:
    """`app` behind a JsonRefusingRunner on a free loopback port (yielded)."""
    runner = JsonRefusingRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _status(handler_args: dict[str, int] | None) -> tuple[int, str]:
    app = web.Application(handler_args=handler_args)

    async def anything(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/{tail:.*}", anything)
    async with _serving(app) as port, aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}{LONG_PATH}") as answer:
            return answer.status, answer.content_type


async def test_the_applications_handler_args_reach_the_protocols() -> None:
    """They were dropped: an app's `handler_args` (faust's `web_application_options`)
    had no effect behind this runner."""
    assert await _status({"max_line_size": 16_000}) == (200, "text/plain")


@pytest.mark.parametrize("handler_args", [None, {}])
async def test_without_them_aiohttps_limit_holds_and_is_refused_in_json(
    handler_args: dict[str, int] | None,
) -> None:
    status, content_type = await _status(handler_args)
    assert 400 <= status < 500 and content_type == "application/json"


async def test_a_refused_header_is_logged_without_the_bytes_the_parser_quotes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """aiohttp's refusal text quotes the offending header line whole: a token pasted with
    a stray control byte was logged whole at debug level (found in review)."""
    caplog.set_level(logging.DEBUG, "platform_common")
    token = "Zq3v8KpL2mXw9RtY6uHb4NcJ7sFd1GeA5oIk0"
    async with _serving(web.Application()) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = f"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\x7f\r\n\r\n"
        writer.write(request.encode())
        status_line = await reader.readline()
        writer.close()
    assert status_line.split()[1] == b"400", status_line
    said = [r.getMessage() for r in caplog.records if "malformed request" in r.getMessage()]
    assert said and all(token[:8] not in line for line in said), said
    assert "Invalid header value char" in said[0]  # what was wrong is still said


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "Invalid header value char:\n\n  b'Authorization: Bearer x'\n  ^",
            "Invalid header value char",
        ),
        ("400, message:\n  Bad status line", "400, message"),
        ("Request Timeout", "Request Timeout"),
        ("Invalid HTTP header: b'Bearer Zq3v8KpL2mXw9RtY\\x7f'", "Invalid HTTP header"),
        ('Bad header: b"Authorization: Bearer tok"', "Bad header"),
    ],
)
def test_the_parsers_problem_is_its_first_line(text: str, problem: str) -> None:
    assert parser_problem(text) == problem
