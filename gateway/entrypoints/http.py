"""Request decoding shared by the routes; answers are platform_common.http's."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestPayloadError

from contracts.errors import ErrorCode
from gateway.domain.addresses import client_address
from gateway.domain.tokens import Principal, bearer_token
from gateway.entrypoints.state import SERVICES, SETTINGS, Services
from gateway.errors import GatewayError
from gateway.services.limits import Action


async def read_body(request: web.Request) -> bytes:
    """The whole body, which must arrive within BODY_TIMEOUT seconds (else 4080); one
    that cannot be decoded (broken chunks, a false Content-Encoding) is 4000."""
    limit = request.app[SETTINGS].body_timeout
    try:
        async with asyncio.timeout(limit):
            return await request.read()
    except RequestPayloadError:
        raise GatewayError(ErrorCode.MALFORMED, "request body could not be decoded") from None
    except TimeoutError:
        raise GatewayError(
            ErrorCode.REQUEST_TIMEOUT, f"request body did not arrive within {limit:g} s"
        ) from None


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (4000 otherwise; 4130 when too large)."""
    raw = await read_body(request)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise GatewayError(ErrorCode.MALFORMED, "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise GatewayError(ErrorCode.MALFORMED, "body must be a JSON object")
    return data


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def client(request: web.Request) -> str:
    """The key of the client's address (X-Forwarded-For only from TRUSTED_PROXIES)."""
    proxies = request.app[SETTINGS].trusted_proxies
    forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, []) if proxies else []
    return client_address(request.remote, forwarded, proxies)


def admit(request: web.Request, action: Action, user: str | int | None = None) -> None:
    """Spend a token of `action` for the client's address (and `user`); 4290 when out."""
    who = None if user is None else str(user)
    services(request).limits.admit(action, address=client(request), user=who)


def caller(request: web.Request) -> Principal:
    """The authenticated caller (4010 without a token, 4011 with a bad one)."""
    token = bearer_token(request.headers.get("Authorization"))
    return services(request).auth.authenticate(token)
