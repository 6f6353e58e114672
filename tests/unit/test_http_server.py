"""platform_common/http_server.py: the runner that answers aiohttp's own refusals in JSON
keeps the protocol settings an application gives aiohttp."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web

from platform_common.http_server import JsonRefusingRunner

LONG_PATH = "/" + "a" * 10_000  # past aiohttp's default request-line limit, 8,190


async def _status(handler_args: dict[str, int] | None) -> tuple[int, str]:
    app = web.Application(handler_args=handler_args)

    async def anything(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/{tail:.*}", anything)
    runner = JsonRefusingRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}{LONG_PATH}") as answer:
                return answer.status, answer.content_type
    finally:
        await runner.cleanup()


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
