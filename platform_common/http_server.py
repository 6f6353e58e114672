"""aiohttp's server with the platform's error body for what it refuses itself.

aiohttp answers a request its parser refuses (a request line or header too long, a
control byte in a header) before any middleware runs: a text/plain page, logged as an
ERROR with a traceback ("Error handling request"). It also acts on some headers before
the middlewares (`INTERPRETED`): an `Expect` other than 100-continue is a plain-text 417,
and a non-ASCII value can end in a 5000. `JsonRefusingServer` answers all of these in
the platform's JSON error body (4000, or 4080/4130/5000 as the parser's status says),
logged as one debug line, through `JsonRefusingHandler`s (or a subclass's);
`JsonRefusingRunner` is an `AppRunner` whose server is one. The gateway's server adds a
connection cap, counts the refusals and adds its headers (gateway/entrypoints/server.py);
a worker's internal API runs on the plain one.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from contracts.errors import ErrorCode
from platform_common.http import error_response
from platform_common.logs import clip

log = logging.getLogger(__name__)

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


#: What a server calls with each refusal's code (the gateway counts them).
Refused = Callable[[ErrorCode], None]
#: What a server calls on each refusal's answer before it is sent (the gateway's headers).
Dress = Callable[[web.StreamResponse], None]


def _nothing(_: Any) -> None:
    """Neither counted nor dressed."""


class JsonRefusingHandler(RequestHandler):
    """aiohttp's protocol answering its parser's refusals in the platform's error body,
    counted and dressed by its server's `refused` and `dress`."""

    __slots__ = ("_dress", "_refused")

    def __init__(self, manager: JsonRefusingServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._refused = manager.refused
        self._dress = manager.dress

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
            self._refused(code)
        else:
            # What was wrong, without the bytes aiohttp's parser quotes after it: the whole
            # offending line, which can be an Authorization header with its token (found
            # in review: a token with a stray control byte was logged whole).
            said = message or str(exc)
            log.debug("refused a malformed request (%d): %s", status, clip(parser_problem(said)))
            self._refused(code)
        response = error_response(code, _MESSAGES[code])
        self._dress(response)
        response.force_close()
        return response


def parser_problem(text: str) -> str:
    """aiohttp's text for a request it could not parse, without the request bytes it
    quotes: its first line ("Invalid header value char:" from the C parser), cut before
    a quoted bytes literal ("Invalid HTTP header: b'Bearer ...'" from the pure-Python
    one, which aiohttp runs under AIOHTTP_NO_EXTENSIONS), the colon dropped."""
    first = text.strip().split("\n", 1)[0]
    return re.split(r"""\bb['"]""", first, maxsplit=1)[0].rstrip(": ")


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


def interpreted_problem(request: web.BaseRequest) -> str | None:
    """Why the headers aiohttp interprets itself cannot be met, or None."""
    for name in INTERPRETED:
        if any(not value.isascii() for value in request.headers.getall(name, ())):
            return f"the {name} header must be ASCII"
    # As aiohttp's own handler: an empty Expect, or one on HTTP/1.0, is ignored.
    expect = request.headers.get("Expect")
    if expect and request.version >= (1, 1) and expect.lower() != "100-continue":
        return "the only Expect this server meets is 100-continue"
    return None


class JsonRefusingServer(web.Server):
    """aiohttp's low-level server making `handler_class` protocols, its request handler
    behind a check of the headers aiohttp interprets (`interpreted_problem`: 4000)."""

    handler_class: type[JsonRefusingHandler] = JsonRefusingHandler

    def __init__(
        self, handler: Any, *, refused: Refused = _nothing, dress: Dress = _nothing, **kwargs: Any
    ) -> None:
        self.refused = refused
        self.dress = dress
        # aiohttp's Server keeps these for itself; the rest are the protocols' arguments.
        server_only = ("request_factory", "handler_cancellation", "loop")
        self._handler_args = {k: v for k, v in kwargs.items() if k not in server_only}
        super().__init__(self._screened(handler), **kwargs)

    def _screened(self, handler: Callable[[web.BaseRequest], Any]) -> Any:
        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            problem = interpreted_problem(request)
            if problem is None:
                return await handler(request)  # type: ignore[no-any-return]
            log.debug("refused a request: %s", problem)
            self.refused(ErrorCode.MALFORMED)
            response = error_response(ErrorCode.MALFORMED, problem)
            self.dress(response)
            return response

        return handle

    def __call__(self) -> RequestHandler:
        return self.handler_class(self, loop=asyncio.get_running_loop(), **self._handler_args)


class JsonRefusingRunner(web.AppRunner):
    """An AppRunner whose server is a `JsonRefusingServer`; `handler_args` are the
    protocols' arguments (keepalive_timeout, access_log, ...)."""

    def __init__(
        self, app: web.Application, *, shutdown_timeout: float = 60.0, **handler_args: Any
    ) -> None:
        super().__init__(app, shutdown_timeout=shutdown_timeout, **handler_args)

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # runs the app's start-up, freezes it
        # The protocols' arguments as aiohttp merged them: this runner's, the app's
        # `handler_args` and `debug` (a private attribute of aiohttp's Server, read once
        # here; the test of `handler_args` fails if it moves).
        return self.new_server(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            **plain._kwargs,
        )

    def new_server(self, handler: Any, **kwargs: Any) -> web.Server:
        """The server to run; a subclass makes its own kind."""
        return JsonRefusingServer(handler, **kwargs)
