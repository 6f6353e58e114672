"""Both services' aiohttp edges: JSON answers, and the request id of every request."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import orjson
from aiohttp import web

from contracts.errors import ErrorCode, error_body
from contracts.requests import visible_ascii
from platform_common.logs import request_id

#: The header a request id comes in with, goes back out with and is passed on in.
REQUEST_ID_HEADER = "X-Request-ID"
#: Longest client-supplied request id kept; a longer one is replaced.
REQUEST_ID_MAX = 128
#: The header in which a caller says how long it waits for the answer, in whole
#: milliseconds (the gateway, to the workers: what is left of its try's timeout).
TIMEOUT_HEADER = "X-Timeout-Ms"
#: The largest X-Timeout-Ms taken (nine digits: about 11.6 days).
TIMEOUT_MS_MAX = 999_999_999


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


#: aiohttp's own refusals (unknown route, wrong method, body too large) as platform codes.
_HTTP_CODES = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.TOO_LARGE,
}


def http_error_code(status: int) -> ErrorCode:
    """The platform code for an aiohttp HTTPException's status (>= 400)."""
    code = _HTTP_CODES.get(status)
    if code is None:
        code = ErrorCode.MALFORMED if status < 500 else ErrorCode.INTERNAL
    return code


def http_error_response(
    exc: web.HTTPException, messages: Mapping[ErrorCode, str] | None = None
) -> web.Response:
    """The platform's error body for an aiohttp HTTPException (status >= 400): its code,
    else 4000 or 5000 by status; the message from `messages`, else aiohttp's reason; a
    405 keeps its Allow header."""
    code = http_error_code(exc.status)
    message = (messages or {}).get(code) or exc.reason
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return error_response(code, message, headers)


def caller_timeout(value: str | None) -> float | None:
    """The seconds an X-Timeout-Ms value gives (None when absent); ValueError when it is
    not whole milliseconds 1 .. TIMEOUT_MS_MAX."""
    if value is None:
        return None
    # The length first: int() of over 4,300 digits raises its own message, which the
    # answer would carry.
    digits = value.lstrip("0") if value.isascii() and value.isdigit() else ""
    if not digits or len(digits) > len(str(TIMEOUT_MS_MAX)) or int(digits) > TIMEOUT_MS_MAX:
        raise ValueError(f"{TIMEOUT_HEADER} must be whole milliseconds 1-{TIMEOUT_MS_MAX}")
    return int(digits) / 1000


def incoming_request_id(value: str | None) -> str | None:
    """`value` if it may be a request id (1-128 visible ASCII characters), else None."""
    if value and len(value) <= REQUEST_ID_MAX and visible_ascii(value):
        return value
    return None


@contextmanager
def request_scope(request: web.BaseRequest) -> Iterator[str]:
    """The request's id (its usable X-Request-ID, else a fresh uuid4 hex), set for the
    log lines written within (`platform_common.logs.request_id`)."""
    rid = incoming_request_id(request.headers.get(REQUEST_ID_HEADER)) or uuid.uuid4().hex
    token = request_id.set(rid)
    try:
        yield rid
    finally:
        request_id.reset(token)


def access_fields(status: int, seconds: float) -> dict[str, object]:
    """The `extra=` fields of an access line: the status and the duration in ms."""
    return {"status": status, "duration_ms": round(seconds * 1e3, 2)}
