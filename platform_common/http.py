"""JSON answers of both services' aiohttp edges."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from contracts.errors import ErrorCode, error_body


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """`data` (plain JSON values) as an application/json answer."""
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


def error_response(
    code: ErrorCode, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The platform's error body, with the HTTP status of the code."""
    return json_response(error_body(code, message), code.status, headers)
