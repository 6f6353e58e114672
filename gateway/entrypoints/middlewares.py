"""Request id, metrics and the error mapping every response goes through."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from contracts.errors import ErrorCode
from contracts.requests import RequestProblem
from gateway.entrypoints.state import METRICS
from gateway.errors import GatewayError
from platform_common.http import (
    REQUEST_ID_HEADER,
    error_response,
    http_error_code,
    http_error_response,
    request_scope,
)
from platform_common.logs import clip

log = logging.getLogger(__name__)

_HTTP_MESSAGES = {
    ErrorCode.NOT_FOUND: "no such route",
    ErrorCode.METHOD_NOT_ALLOWED: "method not allowed on this route",
    ErrorCode.TOO_LARGE: "request body too large",
}


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take X-Request-ID (or make one), expose it to logs and workers, echo it back."""
    with request_scope(request) as rid:
        response = await handler(request)
        response.headers[REQUEST_ID_HEADER] = rid
        return response


#: The methods the request counter names. Any other counts as "other": aiohttp's
#: pure-Python parser takes any token as a method, and each would start a new series.
COUNTED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


def method_label(method: str) -> str:
    """The request counter's `method` label: the method if counted, else "other"."""
    return method if method in COUNTED_METHODS else "other"


@web.middleware
async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    app_metrics = request.app[METRICS]
    app_metrics.requests.labels(route, method_label(request.method), str(response.status)).inc()
    if response.status != 101:  # a WebSocket's handler returns when the socket closes
        app_metrics.latency.labels(route).observe(time.perf_counter() - started)
    return response


#: Seconds a 503 (no worker 5030, Kafka 5031, MySQL 5032) asks a client to wait: about a
#: worker's readmission probe or a broker's leader election, and short enough that a
#: client that honours it is not kept waiting much past the recovery.
UNAVAILABLE_RETRY_AFTER = "2"


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as a JSON error body; nothing unexpected leaks a 500 page."""
    try:
        return await handler(request)
    except GatewayError as exc:
        if exc.code.status >= 500:
            log.warning("%s %s failed: %s", request.method, clip(request.path), clip(str(exc)))
        request.app[METRICS].errors.labels(exc.code.value).inc()
        headers = exc.headers
        if exc.code.status == 503 and "Retry-After" not in headers:
            headers = {**headers, "Retry-After": UNAVAILABLE_RETRY_AFTER}
        response = error_response(exc.code, exc.message, headers)
        if exc.code is ErrorCode.REQUEST_TIMEOUT:
            response.force_close()  # the rest of the body is not worth waiting for
        return response
    except RequestProblem as exc:
        request.app[METRICS].errors.labels(exc.code.value).inc()
        return error_response(exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        request.app[METRICS].errors.labels(http_error_code(exc.status).value).inc()
        return http_error_response(exc, _HTTP_MESSAGES)
    except ConnectionError as exc:  # the client went away mid-request: nobody to answer
        log.debug("client went away during %s %s: %s", request.method, clip(request.path), exc)
        return error_response(ErrorCode.MALFORMED, "client went away")
    except Exception:  # the edge of the app: anything unforeseen becomes a logged 5000
        log.exception("unhandled error in %s %s", request.method, clip(request.path))
        request.app[METRICS].errors.labels(ErrorCode.INTERNAL.value).inc()
        return error_response(ErrorCode.INTERNAL, "internal error")
