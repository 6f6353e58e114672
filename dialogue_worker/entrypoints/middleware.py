"""The edge of the internal API: token check, request id, and every error as a JSON body."""

from __future__ import annotations

import hmac
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from contracts.errors import ErrorCode
from contracts.requests import RequestProblem
from dialogue_worker.errors import OutboxUnavailable, RequestError, StorageUnavailable
from dialogue_worker.metrics import WorkerMetrics
from platform_common.http import (
    REQUEST_ID_HEADER,
    access_fields,
    error_response,
    http_error_response,
    request_scope,
)

log = logging.getLogger(__name__)
SCHEME = "Entrypoint"


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


def edge_middleware(token: str, metrics: WorkerMetrics) -> Middleware:
    secret = token.encode()

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        with request_scope(request) as rid:
            started = time.monotonic()
            response = await _handle(request, handler, secret)
            response.headers[REQUEST_ID_HEADER] = rid
            metrics.http_requests.labels(_route(request), str(response.status)).inc()
            log.info(
                "%s %s -> %d",
                request.method,
                request.path,
                response.status,
                extra=access_fields(response.status, time.monotonic() - started),
            )
            return response

    return edge


async def _handle(request: web.Request, handler: Handler, token: bytes) -> web.StreamResponse:
    try:
        _authorize(request, token)
        response: web.StreamResponse = await handler(request)
        return response
    except (RequestError, RequestProblem) as exc:
        return error_response(exc.code, exc.message)
    except web.HTTPException as exc:  # aiohttp's own: unknown route, wrong method, too large
        if exc.status < 400:
            raise
        return http_error_response(exc)
    except ConnectionError as exc:  # the caller went away mid-request: nobody to answer
        log.debug("caller went away during %s %s: %s", request.method, request.path, exc)
        return error_response(ErrorCode.MALFORMED, "caller went away")
    except StorageUnavailable as exc:
        log.warning("storage unavailable: %s", exc)
        return error_response(ErrorCode.NO_WORKER, "storage unavailable on this worker")
    except OutboxUnavailable as exc:
        log.warning("message bus unavailable: %s", exc)
        return error_response(ErrorCode.BUS_UNAVAILABLE, "message bus unavailable; retry")
    except Exception:  # the edge: anything unexpected is a logged 5000, never a plain page
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(ErrorCode.INTERNAL, "internal error")
