"""`GET /v1/stream`: the live WebSocket (frames and close codes in contracts/live.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time

from aiohttp import WSMsgType, web

from contracts.errors import ErrorCode
from contracts.live import (
    CLIENT_FRAME_MAX,
    CloseCode,
    Hello,
    HelloProblem,
    parse_hello,
)
from gateway.domain.tokens import Principal, TokenExpired
from gateway.entrypoints.http import admit, services
from gateway.entrypoints.http import client as client_address
from gateway.entrypoints.state import METRICS, SETTINGS
from gateway.errors import GatewayError
from gateway.services.limits import Action
from gateway.services.live import Session, StreamUnavailable

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

#: Seconds a close may take (the client reads our close frame) before the connection is cut.
CLOSE_WITHIN = 2.0


class WebSocket:
    """A session's view of one aiohttp WebSocket: send a frame, or close it soon."""

    __slots__ = ("_closing", "_request", "_send_within", "_ws", "code")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, send_within: float) -> None:
        self._ws = ws
        self._request = request
        self._send_within = send_within
        self.code: CloseCode | None = None
        self._closing: asyncio.Task[None] | None = None

    async def send(self, text: str) -> None:
        """Send one frame; a client that has not taken it within `send_within` seconds
        (its buffers full: it stopped reading) is cut off, and ConnectionResetError is
        raised. Without the bound a catch-up would hold its slot (STREAM_CATCH_UPS) for
        as long as the client stays connected, and a close waits for the same drain."""
        try:
            async with asyncio.timeout(self._send_within):
                await self._ws.send_str(text)
        except TimeoutError:
            if self.code is None:
                self.code = CloseCode.TOO_SLOW
            if self._request.transport is not None:
                self._request.transport.abort()
            raise ConnectionResetError(
                f"the client took no frame within {self._send_within:g} s"
            ) from None

    def close(self, code: CloseCode, reason: str) -> None:
        if self._closing is None and not self._ws.closed:
            self.code = code
            self._closing = asyncio.create_task(self._close(code, reason))

    async def closed(self) -> None:
        """Wait for a close begun by `close` to finish."""
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)

    async def _close(self, code: CloseCode, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_WITHIN):
                await self._ws.close(code=code, message=close_reason(reason))
        except (TimeoutError, ConnectionError):  # it does not read: cut the connection
            if self._request.transport is not None:
                self._request.transport.abort()


def close_reason(reason: str) -> bytes:
    """At most 120 bytes of UTF-8 (a close frame holds 123), never cut inside a character:
    a reason that is not valid UTF-8 fails the connection in the client (1007)."""
    return reason.encode()[:120].decode("utf-8", "ignore").encode()


@routes.get("/v1/stream")
async def stream(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(
        heartbeat=settings.stream_heartbeat, max_msg_size=CLIENT_FRAME_MAX, compress=False
    )
    if not ws.can_prepare(request).ok:
        raise GatewayError(ErrorCode.MALFORMED, "GET /v1/stream is a WebSocket: send an Upgrade")
    admit(request, Action.OPEN_STREAM)
    await ws.prepare(request)
    _limit_send_buffer(request, settings.stream_send_buffer)
    client = WebSocket(ws, request, settings.stream_send_timeout)
    opened: tuple[Session, asyncio.TimerHandle] | None = None
    try:
        opened = await _open(request, ws, client)
        if opened is not None:
            async for msg in ws:  # pongs and the close handshake need a reader
                if msg.type is WSMsgType.BINARY:
                    client.close(CloseCode.UNSUPPORTED, "frames are JSON text")
                # Text frames after hello carry nothing the server acts on: ignored.
    except (ConnectionError, asyncio.CancelledError):
        raise
    except Exception:  # a bug: tell the client, log it once
        log.exception("stream failed")
        client.close(CloseCode.INTERNAL, "internal error")
    finally:
        if opened is not None:
            session, expiry = opened
            expiry.cancel()
            await services(request).stream.close(session)
        await client.closed()
        code = client.code if client.code is not None else ws.close_code
        request.app[METRICS].stream_closes.labels(_close_label(code)).inc()
    return ws


#: Close codes a client may send that are worth a label of their own.
_CLIENT_CODES = frozenset({1000, 1001, 1005, 1006})


def _close_label(code: int | None) -> str:
    """The metric's label: a code the server chose, or a common one; a client can close
    with any code from 3000 to 4999, and each would otherwise be a series of its own."""
    if code is None:
        return "None"
    if code in _CLIENT_CODES or code in CloseCode._value2member_map_:
        return str(code)
    return "other"


async def _open(
    request: web.Request, ws: web.WebSocketResponse, client: WebSocket
) -> tuple[Session, asyncio.TimerHandle] | None:
    """Hello, token, then a session that has caught up; None when the socket is closing.

    Its own coroutine so that what hello carried is freed once the session runs.
    """
    settings = request.app[SETTINGS]
    hello = await _hello(ws, client, settings.stream_hello_timeout)
    who = _principal(request, hello, client) if hello is not None else None
    if hello is None or who is None:
        return None
    expiry = asyncio.get_running_loop().call_later(
        max(0.0, who.expires_at - time.time()),
        client.close,
        CloseCode.TOKEN_EXPIRED,
        "token expired: reconnect with a new one",
    )
    try:
        session = await services(request).stream.open(
            who.user_id, client, hello.since, client_address(request)
        )
    except StreamUnavailable as exc:
        expiry.cancel()
        client.close(exc.code, str(exc))
        return None
    except BaseException:
        expiry.cancel()
        raise
    return session, expiry


async def _hello(ws: web.WebSocketResponse, client: WebSocket, within: float) -> Hello | None:
    """The client's hello, or None when the socket is closing (and why was said)."""
    try:
        async with asyncio.timeout(within):
            msg = await ws.receive()
    except TimeoutError:
        client.close(CloseCode.HELLO_TIMEOUT, f"no hello within {within:g} s")
        return None
    if msg.type is WSMsgType.BINARY:
        client.close(CloseCode.UNSUPPORTED, "frames are JSON text")
        return None
    if msg.type is not WSMsgType.TEXT:
        return None  # the client closed, or its frame was too big (aiohttp closed with 1009)
    try:
        return parse_hello(msg.data)
    except HelloProblem as exc:
        client.close(CloseCode.BAD_HELLO, str(exc))
        return None


def _principal(request: web.Request, hello: Hello, client: WebSocket) -> Principal | None:
    try:
        return services(request).auth.authenticate(hello.token)
    except TokenExpired:
        client.close(CloseCode.TOKEN_EXPIRED, "token expired: reconnect with a new one")
    except GatewayError as exc:
        client.close(CloseCode.UNAUTHORIZED, exc.message)
    return None


def _limit_send_buffer(request: web.Request, size: int) -> None:
    """A small kernel buffer, so a client that stops reading fills its queue soon."""
    if size and request.transport is not None:
        sock = request.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
