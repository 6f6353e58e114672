"""The HTTP server under the app: a connection cap, and JSON for what aiohttp rejects.

aiohttp answers a request its parser refuses (a broken request line or header) before
any middleware runs, in plain text. `GatewayRequestHandler` answers those with the
platform's error body instead, logs them as one debug line rather than an ERROR
traceback, and closes connections beyond MAX_CONNECTIONS as soon as they are accepted.
`GatewayRunner` is an `AppRunner` whose server makes these handlers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_log import AccessLogger
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from contracts.errors import ErrorCode
from gateway.domain.addresses import (
    UNKNOWN,
    IPNetwork,
    address_key,
    parse_ip,
    shares_its_address,
)
from gateway.entrypoints.headers import secure
from gateway.entrypoints.state import METRICS
from platform_common.http import error_response
from platform_common.logs import clip

log = logging.getLogger(__name__)

#: Seconds between two "connections refused" warnings (the count is in each line).
REFUSAL_LOG_EVERY = 10.0
#: Seconds an answer may take to reach a client, plus one second per SEND_RATE bytes of
#: its body: sending (the head, the body, the end) waits while the client reads, and one
#: that stops reading would otherwise hold its connection, its handler and the answer's
#: buffers for ever (TCP keep-alive does not end it: the client's kernel goes on
#: acknowledging). The rate keeps a slow link that reads a large page (200 messages of
#: 4,096 escaped control characters: about 4.9 MB) from being cut off while it reads.
SEND_WITHIN = 30.0
SEND_RATE = 16 * 1024
#: Seconds an unread request body is still drained after the answer before closing.
LINGER = 1.0

_STATUS_CODES = {
    408: ErrorCode.REQUEST_TIMEOUT,
    413: ErrorCode.TOO_LARGE,
}
_MESSAGES = {
    ErrorCode.MALFORMED: "malformed HTTP request",
    ErrorCode.REQUEST_TIMEOUT: "request did not arrive in time",
    ErrorCode.TOO_LARGE: "request too large",
    ErrorCode.INTERNAL: "internal error",
}


def parser_error_code(status: int) -> ErrorCode:
    """The platform code for a status aiohttp's parser or server chose."""
    if status >= 500:
        return ErrorCode.INTERNAL
    return _STATUS_CODES.get(status, ErrorCode.MALFORMED)


#: The key of a connection held to MAX_CONNECTIONS only (a trusted proxy, loopback).
SHARED = ""


class ConnectionCap:
    """How many connections are open, in all and per client address, and the throttled
    log of refused ones.

    One address may hold `per_address` of the `limit` (an IPv6 client its /64), so one
    host cannot fill the cap and lock everyone out, health checks included. Trusted
    proxies (every client behind them shares their address) and loopback peers (a proxy
    on the same host) are held to `limit` only.
    """

    def __init__(
        self, limit: int, per_address: int | None = None, proxies: Sequence[IPNetwork] = ()
    ) -> None:
        self.limit = limit
        self.per_address = limit if per_address is None else per_address
        self.proxies = tuple(proxies)
        self.open = 0
        self.refused = 0
        self._by_address: dict[str, int] = {}
        self._unlogged = 0
        self._logged_at = -REFUSAL_LOG_EVERY

    def admit(self, peer: Any) -> str | None:
        """Count a new connection from `peer` (a socket's peername); the key to release
        it by, or None when it is refused."""
        address = parse_ip(str(peer[0])) if isinstance(peer, tuple) and peer else None
        key = UNKNOWN if address is None else address_key(address)
        if self.open >= self.limit:
            self._refuse(key, "MAX_CONNECTIONS")
            return None
        if shares_its_address(address, self.proxies):
            self.open += 1
            return SHARED  # not counted under its /64: the LAN around a proxy keeps its share
        if self._by_address.get(key, 0) >= self.per_address:
            self._refuse(key, "MAX_CONNECTIONS_PER_ADDRESS")
            return None
        self.open += 1
        self._by_address[key] = self._by_address.get(key, 0) + 1
        return key

    def release(self, key: str) -> None:
        self.open -= 1
        if key == SHARED:
            return
        left = self._by_address[key] - 1
        if left:
            self._by_address[key] = left
        else:
            del self._by_address[key]

    def _refuse(self, key: str, cap: str) -> None:
        """Count and (at most every REFUSAL_LOG_EVERY seconds) log a refusal."""
        self.refused += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= REFUSAL_LOG_EVERY:
            log.warning(
                "refused %d connection(s), the last from %s: %d open (%s reached)",
                self._unlogged,
                key,
                self.open,
                cap,
            )
            self._logged_at, self._unlogged = now, 0


class GatewayRequestHandler(RequestHandler):
    """aiohttp's protocol with a connection cap and JSON error answers."""

    __slots__ = ("_admitted", "_cap", "_count_error", "_send_within")

    def __init__(self, manager: GatewayServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._cap = manager.cap
        self._count_error = manager.count_error
        self._send_within = manager.send_within
        self._admitted: str | None = None  # the key the connection is counted under

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._admitted = self._cap.admit(transport.get_extra_info("peername"))
        if self._admitted is None:
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._admitted is None:
            return
        self._cap.release(self._admitted)
        self._admitted = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._admitted is not None:
            super().data_received(data)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        """aiohttp's, within SEND_WITHIN and a second per SEND_RATE bytes of the body: a
        client that does not take the answer in that time has its connection aborted."""
        within = self._send_within + (resp.content_length or 0) / SEND_RATE
        try:
            async with asyncio.timeout(within):
                return await super().finish_response(request, resp, start_time)
        except TimeoutError:
            log.info(
                "client took no answer to %s %s within %.0fs: connection aborted",
                request.method,
                clip(request.path),
                within,
            )
            if self.transport is not None:
                self.transport.abort()
            self.log_access(request, resp, start_time)
            return resp, True

    def log_exception(self, *args: Any, **kwargs: Any) -> None:
        """A client that breaks its body or goes away is one debug line, not an ERROR."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, RequestPayloadError | ConnectionError):
            log.debug("client sent a broken body or went away: %s", clip(str(exc)))
            return
        super().log_exception(*args, **kwargs)

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # an answer is on its way: aiohttp gives up
            return super().handle_error(request, status, exc, message)
        code = parser_error_code(status)
        if isinstance(exc, ConnectionError):
            log.debug("client went away: %s", clip(str(exc)))
        elif code is ErrorCode.INTERNAL:
            log.error("error outside the app's handlers", exc_info=exc)
            self._count_error(code)
        else:
            log.debug("refused a malformed request (%d): %s", status, clip(message or str(exc)))
            self._count_error(code)
        response = error_response(code, _MESSAGES[code])
        secure(response)
        response.force_close()
        return response


#: Headers aiohttp acts on itself before any middleware runs (the Expect handler, the
#: WebSocket handshake). It puts some of their values into its own error texts, which
#: cannot encode a non-UTF-8 byte (read as a lone surrogate): a 5000 with a traceback.
INTERPRETED = (
    "Expect",
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
)


def screened(
    handler: Callable[[web.BaseRequest], Any], count_error: Callable[[ErrorCode], None]
) -> Callable[[web.BaseRequest], Any]:
    """`handler` behind a check of the headers aiohttp interprets before the app's
    middlewares: a value that is not ASCII, or an Expect other than 100-continue (which
    aiohttp answers in plain text), is 4000 in the platform's error body."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        problem = _interpreted_problem(request)
        if problem is None:
            return await handler(request)  # type: ignore[no-any-return]
        log.debug("refused a request: %s", problem)
        count_error(ErrorCode.MALFORMED)
        response = error_response(ErrorCode.MALFORMED, problem)
        secure(response)
        return response

    return handle


def _interpreted_problem(request: web.BaseRequest) -> str | None:
    for name in INTERPRETED:
        if any(not value.isascii() for value in request.headers.getall(name, ())):
            return f"the {name} header must be ASCII"
    # As aiohttp's own handler: an empty Expect, or one on HTTP/1.0, is ignored.
    expect = request.headers.get("Expect")
    if expect and request.version >= (1, 1) and expect.lower() != "100-continue":
        return "the only Expect this server meets is 100-continue"
    return None


class GatewayServer(web.Server):
    """aiohttp's low-level server making `GatewayRequestHandler`s."""

    def __init__(
        self,
        handler: Any,
        *,
        cap: ConnectionCap,
        count_error: Callable[[ErrorCode], None],
        send_within: float,
        **kwargs: Any,
    ) -> None:
        self.cap = cap
        self.count_error = count_error
        self.send_within = send_within
        server_only = ("request_factory", "handler_cancellation", "loop")
        self._handler_args = {k: v for k, v in kwargs.items() if k not in server_only}
        super().__init__(screened(handler, count_error), **kwargs)

    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(self, loop=asyncio.get_running_loop(), **self._handler_args)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose server caps connections and answers parser errors in JSON.

    `header_timeout` bounds how long a connection may take to deliver a complete
    request head, from its opening or after the previous answer (aiohttp's keep-alive
    timer closes a connection still waiting for a head when it fires).
    """

    def __init__(
        self,
        app: web.Application,
        *,
        max_connections: int,
        header_timeout: float,
        max_connections_per_address: int | None = None,
        trusted_proxies: Sequence[IPNetwork] = (),
        access_log_class: type[AbstractAccessLogger] = AccessLogger,
        shutdown_timeout: float = 15.0,
        send_within: float = SEND_WITHIN,
    ) -> None:
        self._send_within = send_within
        self._handler_kwargs: dict[str, Any] = {
            "keepalive_timeout": header_timeout,
            "lingering_time": LINGER,
            "access_log_class": access_log_class,
        }
        super().__init__(app, shutdown_timeout=shutdown_timeout, **self._handler_kwargs)
        self.cap = ConnectionCap(max_connections, max_connections_per_address, trusted_proxies)

    def _count_error(self, code: ErrorCode) -> None:
        """Count an error answer the server gave before the app saw the request."""
        self.app[METRICS].errors.labels(code.value).inc()

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # runs the app's start-up, freezes it
        return GatewayServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            cap=self.cap,
            count_error=self._count_error,
            send_within=self._send_within,
            **self._handler_kwargs,
        )
