"""The edge of the internal API: token check, request id, and every error as a JSON body."""

from __future__ import annotations

import hmac
import logging
import time
from contextlib import nullcontext

import pymongo
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pymongo.errors import PyMongoError, ServerSelectionTimeoutError

from contracts.errors import ErrorCode
from contracts.requests import RequestProblem
from dialogue_worker.errors import OutboxUnavailable, RequestError, StorageUnavailable
from dialogue_worker.metrics import WorkerMetrics
from platform_common.http import (
    REQUEST_ID_HEADER,
    TIMEOUT_HEADER,
    access_fields,
    caller_timeout,
    error_response,
    http_error_response,
    request_scope,
)
from platform_common.logs import clip

log = logging.getLogger(__name__)
SCHEME = "Entrypoint"
#: Seconds a read goes on past its caller's X-Timeout-Ms. pymongo starts no operation
#: with less than a round trip left, so a read given exactly the caller's time would
#: answer 5030 just before the caller's own timeout, and a 5xx ejects this worker even
#: where that timeout would not (a try the caller's deadline cut short is excused).
#: A little longer, and the caller's timeout ends the try, as without the header.
PAST_CALLERS_TIMEOUT = 0.25


def _authorize(request: web.Request, token: bytes) -> None:
    header = request.headers.get("Authorization")
    if not header:
        raise RequestError(ErrorCode.NO_TOKEN, f"missing 'Authorization: {SCHEME} <token>'")
    scheme, _, given = header.partition(" ")
    # A header's raw non-ASCII bytes arrive as lone surrogates, which .encode() refuses.
    if (
        scheme != SCHEME
        or not given.isascii()
        or not hmac.compare_digest(given.strip().encode(), token)
    ):
        raise RequestError(ErrorCode.BAD_TOKEN, "bad entrypoint token")


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _callers_timeout(request: web.Request, ceiling: float) -> float | None:
    """The seconds a read (GET) may take, when its caller says how long it waits
    (TIMEOUT_HEADER): that and PAST_CALLERS_TIMEOUT, at most `ceiling` (MONGO_TIMEOUT).
    Past it nobody waits for the answer, and a worker that went on reading would spend
    itself on abandoned requests just when it is slow. Writes take their own time:
    stopping one half-way helps nobody."""
    try:
        seconds = caller_timeout(request.headers.get(TIMEOUT_HEADER))
    except ValueError as exc:
        raise RequestError(ErrorCode.MALFORMED, str(exc)) from None
    if seconds is None or request.method != "GET":
        return None
    return min(seconds + PAST_CALLERS_TIMEOUT, ceiling)


def _ran_out(exc: StorageUnavailable) -> bool:
    """Whether a read failed for want of time, with MongoDB answering: not a server
    selection that timed out (MongoDB unreachable is said as such, whoever's time ran
    out)."""
    cause = exc.__cause__
    return (
        isinstance(cause, PyMongoError)
        and cause.timeout
        and not isinstance(cause, ServerSelectionTimeoutError)
    )


def edge_middleware(token: str, metrics: WorkerMetrics, ceiling: float) -> Middleware:
    """`ceiling`: the most seconds a caller's TIMEOUT_HEADER gives a read (MONGO_TIMEOUT)."""
    secret = token.encode()

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        with request_scope(request) as rid:
            started = time.monotonic()
            response = await _handle(request, handler, secret, ceiling)
            response.headers[REQUEST_ID_HEADER] = rid
            metrics.http_requests.labels(_route(request), str(response.status)).inc()
            log.info(
                "%s %s -> %d",
                clip(request.method),
                clip(request.path),
                response.status,
                extra=access_fields(response.status, time.monotonic() - started),
            )
            return response

    return edge


async def _handle(
    request: web.Request, handler: Handler, token: bytes, ceiling: float
) -> web.StreamResponse:
    given = None
    try:
        _authorize(request, token)
        given = _callers_timeout(request, ceiling)
        # pymongo.timeout: every MongoDB operation of the handler, in all, within `given`.
        with nullcontext() if given is None else pymongo.timeout(given):
            response: web.StreamResponse = await handler(request)
        return response
    except (RequestError, RequestProblem) as exc:
        response = error_response(exc.code, exc.message)
        if exc.code is ErrorCode.REQUEST_TIMEOUT:
            response.force_close()  # the rest of the body is not worth waiting for
        return response
    except web.HTTPException as exc:  # aiohttp's own: unknown route, wrong method, too large
        if exc.status < 400:
            raise
        return http_error_response(exc)
    except ConnectionError as exc:  # the caller went away mid-request: nobody to answer
        log.debug(
            "caller went away during %s %s: %s", clip(request.method), clip(request.path), exc
        )
        return error_response(ErrorCode.MALFORMED, "caller went away")
    except StorageUnavailable as exc:
        if given is not None and _ran_out(exc):
            log.info("read given up at the caller's timeout (%g s): %s", given, exc)
            return error_response(
                ErrorCode.NO_WORKER, f"no answer within the caller's {TIMEOUT_HEADER}"
            )
        log.warning("storage unavailable: %s", exc)
        return error_response(ErrorCode.NO_WORKER, "storage unavailable on this worker")
    except OutboxUnavailable as exc:
        log.warning("message bus unavailable: %s", exc)
        return error_response(ErrorCode.BUS_UNAVAILABLE, "message bus unavailable; retry")
    except Exception:  # the edge: anything unexpected is a logged 5000, never a plain page
        log.exception("unhandled error in %s %s", clip(request.method), clip(request.path))
        return error_response(ErrorCode.INTERNAL, "internal error")
