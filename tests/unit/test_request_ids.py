"""One request-id handling for both services' edges (platform_common.http): a usable
X-Request-ID is kept, anything else replaced by a fresh id; the id is on every log line of
the request and echoed back; both access lines name the duration `duration_ms`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from dialogue_worker.entrypoints.middleware import edge_middleware
from dialogue_worker.metrics import WorkerMetrics
from gateway.entrypoints.middlewares import request_ids
from gateway.logs import AccessLogger
from platform_common.http import (
    REQUEST_ID_HEADER,
    access_fields,
    incoming_request_id,
    json_response,
)
from platform_common.logs import request_id

TOKEN = "test-token"
Client = TestClient[web.Request, web.Application]


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc-123", True),
        ("x" * 128, True),
        ("~!{}<>", True),
        (None, False),
        ("", False),
        ("x" * 129, False),
        ("a b", False),
        ("a\tb", False),
        ("line\nbreak", False),
        ("naïve", False),
        ("\x00", False),
    ],
)
def test_only_1_to_128_visible_ascii_characters_are_kept(given: str | None, kept: bool) -> None:
    assert incoming_request_id(given) == (given if kept else None)


def test_the_access_line_names_the_duration_duration_ms() -> None:
    assert access_fields(201, 0.0123456) == {"status": 201, "duration_ms": 12.35}


async def _seen(request: web.Request) -> web.StreamResponse:
    """Answers with the request id the log lines of the request would carry."""
    return json_response({"seen": request_id.get()})


def _gateway_app() -> web.Application:
    app = web.Application(middlewares=[request_ids])
    app.router.add_get("/seen", _seen)
    return app


def _worker_app() -> web.Application:
    app = web.Application(middlewares=[edge_middleware(TOKEN, WorkerMetrics(), 10.0)])
    app.router.add_get("/seen", _seen)
    return app


@pytest.fixture(params=["gateway", "worker"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    make: Callable[[], web.Application] = (
        _gateway_app if request.param == "gateway" else _worker_app
    )
    async with TestClient(TestServer(make())) as client:
        yield client


async def _get(client: Client, rid: str | None) -> tuple[str, str]:
    headers = {"Authorization": f"Entrypoint {TOKEN}"}
    if rid is not None:
        headers[REQUEST_ID_HEADER] = rid
    response = await client.get("/seen", headers=headers)
    assert response.status == 200
    seen: str = (await response.json())["seen"]
    return response.headers[REQUEST_ID_HEADER], seen


async def test_a_usable_request_id_is_kept_logged_and_echoed(client: Client) -> None:
    assert await _get(client, "abc-123") == ("abc-123", "abc-123")


@pytest.mark.parametrize("hostile", ["x" * 129, "a b", "a\tb", "evil  \"quote'", ""])
async def test_a_hostile_request_id_is_replaced_by_a_fresh_one(
    client: Client, hostile: str
) -> None:
    echoed, seen = await _get(client, hostile)
    assert echoed == seen and echoed != hostile
    assert len(echoed) == 32 and int(echoed, 16) >= 0  # a uuid4 hex


async def test_without_a_request_id_one_is_made(client: Client) -> None:
    first, seen = await _get(client, None)
    second, _ = await _get(client, None)
    assert first == seen and len(first) == 32 and first != second


async def test_the_worker_echoes_the_request_id_on_errors_too() -> None:
    async with TestClient(TestServer(_worker_app())) as client:
        response = await client.get("/seen", headers={REQUEST_ID_HEADER: "r-1"})  # no token
        assert response.status == 401
        assert response.headers[REQUEST_ID_HEADER] == "r-1"


async def test_the_worker_access_line_has_status_and_duration_ms(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "dialogue_worker.entrypoints.middleware")
    async with TestClient(TestServer(_worker_app())) as client:
        await client.get("/nope", headers={"Authorization": f"Entrypoint {TOKEN}"})
    [line] = [r for r in caplog.records if r.getMessage() == "GET /nope -> 404"]
    assert line.__dict__["status"] == 404
    assert isinstance(line.__dict__["duration_ms"], float)
    assert "ms" not in line.__dict__


async def test_the_worker_access_line_cuts_the_path_a_client_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """security.md: strings a client controls are cut to 200 characters in log lines; the
    worker's access line carried an 8,000-character path whole."""
    caplog.set_level(logging.INFO, "dialogue_worker.entrypoints.middleware")
    async with TestClient(TestServer(_worker_app())) as client:
        response = await client.get("/" + "a" * 8_000)  # no token: 401, logged all the same
        assert response.status == 401
    [line] = [r for r in caplog.records if r.getMessage().endswith("-> 401")]
    assert len(line.getMessage()) < 300


def test_the_gateway_access_line_has_status_and_duration_ms(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("aiohttp.access.test")
    caplog.set_level(logging.INFO, logger.name)
    request = make_mocked_request("GET", "/v1/chats")
    response = web.Response(status=204, headers={REQUEST_ID_HEADER: "r-2"})
    AccessLogger(logger, "").log(request, response, 0.25)
    [line] = caplog.records
    assert (line.__dict__["status"], line.__dict__["duration_ms"]) == (204, 250.0)
    assert line.__dict__["request_id"] == "r-2"
