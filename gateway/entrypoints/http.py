"""Request decoding and response encoding shared by the routes."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from contracts.errors import ErrorCode, error_body
from gateway.domain.tokens import Principal, bearer_token
from gateway.entrypoints.state import SERVICES, Services
from gateway.errors import GatewayError


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(
    code: ErrorCode, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response(error_body(code, message), code.status, headers)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (4000 otherwise; 4130 when too large)."""
    raw = await request.read()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError(ErrorCode.MALFORMED, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise GatewayError(ErrorCode.MALFORMED, "body must be a JSON object")
    return data


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def caller(request: web.Request) -> Principal:
    """The authenticated caller (4010 without a token, 4011 with a bad one)."""
    token = bearer_token(request.headers.get("Authorization"))
    return services(request).auth.authenticate(token)
