"""Liveness, readiness, metrics, the OpenAPI document and the admin view of workers."""

from __future__ import annotations

import hmac
from functools import cache
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from contracts.errors import ErrorCode
from gateway.entrypoints.http import services
from gateway.entrypoints.state import METRICS, SETTINGS
from gateway.errors import GatewayError
from platform_common.http import json_response

OPENAPI_FILE = Path(__file__).resolve().parents[1] / "openapi.json"

routes = web.RouteTableDef()


@cache
def _openapi() -> bytes:
    return OPENAPI_FILE.read_bytes()


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return json_response({"object": "health", "status": "ok"})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    checks = await services(request).readiness.checks()
    ok = all(check.ok for check in checks)
    body = {
        "object": "readiness",
        "ready": ok,
        "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
    }
    return json_response(body, status=200 if ok else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text, for the admin token only (it names every worker and its counters)."""
    _require_admin(request)
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_openapi(), content_type="application/json")


def _require_admin(request: web.Request) -> None:
    expected = request.app[SETTINGS].admin_secret()
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise GatewayError(ErrorCode.NO_TOKEN, "admin token required")
    if expected is None:
        raise GatewayError(ErrorCode.FORBIDDEN, "admin view disabled: ADMIN_TOKEN is not set")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise GatewayError(ErrorCode.BAD_TOKEN, "bad admin token")


@routes.get("/v1/admin/instances")
async def instances(request: web.Request) -> web.Response:
    _require_admin(request)
    data = [
        {
            "object": "instance",
            "id": view.id,
            "url": view.url,
            "requests": view.requests,
            "failures": view.failures,
            "ejections": view.ejections,
            "healthy": view.healthy,
        }
        for view in services(request).workers.instances()
    ]
    return json_response({"object": "list", "data": data, "nextCursor": None})
