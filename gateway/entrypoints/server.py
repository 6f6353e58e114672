"""The HTTP server under the app: a connection cap, and JSON for what aiohttp rejects.

aiohttp answers a request its parser refuses (a broken request line or header) before
any middleware runs, in plain text. `GatewayRequestHandler` answers those with the
platform's error body instead (platform_common/http_server.py), counted and with the
gateway's security headers, and closes connections beyond MAX_CONNECTIONS as soon as
they are accepted. `GatewayRunner` is an `AppRunner` whose server makes these handlers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_log import AccessLogger

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
from platform_common.http_server import JsonRefusingHandler, JsonRefusingRunner, JsonRefusingServer
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


class GatewayRequestHandler(JsonRefusingHandler):
    """aiohttp's protocol with a connection cap, JSON error answers (counted, with the
    gateway's security headers) and a bound on the time an answer takes to send."""

    __slots__ = ("_admitted", "_cap", "_send_within")

    def __init__(self, manager: GatewayServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._cap = manager.cap
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


class GatewayServer(JsonRefusingServer):
    """aiohttp's low-level server making `GatewayRequestHandler`s."""

    handler_class = GatewayRequestHandler

    def __init__(self, handler: Any, *, cap: ConnectionCap, send_within: float, **kwargs: Any):
        self.cap = cap
        self.send_within = send_within
        super().__init__(handler, **kwargs)


class GatewayRunner(JsonRefusingRunner):
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
        super().__init__(
            app,
            shutdown_timeout=shutdown_timeout,
            keepalive_timeout=header_timeout,
            lingering_time=LINGER,
            access_log_class=access_log_class,
        )
        self.cap = ConnectionCap(max_connections, max_connections_per_address, trusted_proxies)

    def _count_error(self, code: ErrorCode) -> None:
        """Count an error answer the server gave before the app saw the request."""
        self.app[METRICS].errors.labels(code.value).inc()

    def new_server(self, handler: Any, **kwargs: Any) -> web.Server:
        return GatewayServer(
            handler,
            cap=self.cap,
            send_within=self._send_within,
            refused=self._count_error,
            dress=secure,
            **kwargs,
        )
