"""`GET /v1/stream`: the live WebSocket (frames and close codes in contracts/live.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Collection, Coroutine
from typing import Any

from aiohttp import WSMsgType, web
from yarl import URL

from contracts.errors import ErrorCode
from contracts.live import (
    CLIENT_FRAME_MAX,
    CloseCode,
    Hello,
    HelloProblem,
    parse_hello,
)
from gateway.domain import addresses
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


def origin_allowed(origin: str | None, host: str, allowed: Collection[str]) -> bool:
    """Whether a stream may be opened from `origin` (the request's Origin header): none
    (not a browser: a browser always sends one with a WebSocket), one in `allowed`, or
    the gateway's own: the host and port the request was sent to (`Host`), whatever
    the scheme, since TLS may end at a proxy in front."""
    if origin is None:
        return True
    try:
        url = URL(origin)
        own = URL.build(scheme=url.scheme, authority=host)
        normal = str(url.origin())
    except (ValueError, TypeError):
        return origin in allowed  # "null", or nothing a browser sends
    if normal in allowed:
        return True
    return url.scheme in ("http", "https") and (url.host, url.port) == (own.host, own.port)


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
    if not origin_allowed(request.headers.get("Origin"), request.host, settings.stream_origins):
        # Before the stream budget: a page elsewhere, opening sockets from its visitors'
        # browsers, spent their address's budget and kept their own tab's live updates
        # refused (found in review, 2026-12-08). Browsers always send Origin here.
        raise GatewayError(
            ErrorCode.FORBIDDEN, "streams are not open to pages of this origin (STREAM_ORIGINS)"
        )
    admit(request, Action.OPEN_STREAM)
    await ws.prepare(request)
    client = WebSocket(ws, request, settings.stream_send_timeout)
    greeted: tuple[_Opening, asyncio.TimerHandle] | None = None
    # From here on the connection is a WebSocket: whatever fails must close it with a
    # close code. Raised out of the handler, it would reach the errors middleware, whose
    # HTTP answer, written into the upgraded socket, reads as a broken frame (1002).
    try:
        _limit_send_buffer(request, settings.stream_send_buffer)
        greeted = await _greet(request, ws, client)
        if greeted is not None:
            # Read from hello on: aiohttp answers pings and the close handshake only
            # while the socket is read, and the opening runs beside (slot, chats and
            # catch-up may take over a minute); a client that closes meanwhile ends it.
            async for msg in ws:
                if msg.type is WSMsgType.BINARY:
                    client.close(CloseCode.UNSUPPORTED, "frames are JSON text")
                # Text frames after hello carry nothing the server acts on: ignored.
    except Exception:  # a bug: tell the client, log it once
        log.exception("stream failed")
        client.close(CloseCode.INTERNAL, "internal error")
    finally:
        # Counted before any wait: a server that cancels handlers whose client dropped
        # the connection (aiohttp's test server) must not lose the count.
        code = client.code if client.code is not None else ws.close_code
        request.app[METRICS].stream_closes.labels(_close_label(code)).inc()
        if greeted is not None:
            opening, expiry = greeted
            expiry.cancel()
            session = await opening.end()
            if session is not None:
                await services(request).stream.close(session)
        await client.closed()
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


async def _greet(
    request: web.Request, ws: web.WebSocketResponse, client: WebSocket
) -> tuple[_Opening, asyncio.TimerHandle] | None:
    """Hello and token, then the session's opening begun and the token's expiry timer;
    None when the socket is closing.

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
    return _Opening(_open(request, client, who.user_id, hello.since)), expiry


class _Opening:
    """A session's opening (slot, chat list, catch-up), run beside the socket's reader.
    Once done it keeps only the session: an idle stream holds no finished task."""

    __slots__ = ("_task", "session")

    def __init__(self, opening: Coroutine[Any, Any, Session | None]) -> None:
        self.session: Session | None = None
        self._task: asyncio.Task[Session | None] | None = asyncio.create_task(opening)
        self._task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Session | None]) -> None:
        self._task = None
        if not task.cancelled():
            self.session = task.result()

    async def end(self) -> Session | None:
        """The session it opened; one still opening is cancelled first (`open` then
        closes the session it had begun)."""
        task = self._task
        if task is None:
            return self.session
        if not task.done():
            task.cancel()
            await asyncio.wait([task])
        return None if task.cancelled() else task.result()


async def _open(
    request: web.Request, client: WebSocket, uid: int, since: dict[str, int]
) -> Session | None:
    """A session that has caught up; None when there is none, the socket closing."""
    try:
        return await services(request).stream.open(uid, client, since, stream_address(request))
    except StreamUnavailable as exc:
        client.close(exc.code, str(exc))
    except ConnectionError as exc:  # the connection broke, or is closing, under a send
        log.debug("stream of user %d ended during its catch-up: %s", uid, exc)
        if client.code is None:  # neither closing nor cut: make sure the reader ends
            client.close(CloseCode.TRY_AGAIN, "the catch-up was interrupted: resume")
    except Exception:  # a bug: tell the client, log it once
        log.exception("stream failed")
        client.close(CloseCode.INTERNAL, "internal error")
    return None


def stream_address(request: web.Request) -> str | None:
    """The address STREAM_MAX_PER_ADDRESS holds a stream to.

    None for a peer the connection cap holds to MAX_CONNECTIONS only (loopback, a
    trusted proxy: every client behind it shares its address), unless X-Forwarded-For
    named a client behind it.
    """
    address = client_address(request)
    proxies = request.app[SETTINGS].trusted_proxies
    peer = request.remote or ""
    if not addresses.shares_its_address(addresses.parse_ip(peer), proxies):
        return address
    return None if address == addresses.client_address(peer, (), proxies) else address


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
