"""The app factory: settings in, a wired aiohttp application out."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from gateway.bootstrap import AdaptersFactory, build_services, real_adapters
from gateway.entrypoints import (
    auth_routes,
    chat_routes,
    ops_routes,
    stream_routes,
    web_routes,
)
from gateway.entrypoints.headers import on_prepare
from gateway.entrypoints.middlewares import errors, metrics, request_ids
from gateway.entrypoints.state import METRICS, SERVICES, SETTINGS
from gateway.metrics import GatewayMetrics
from gateway.settings import GatewaySettings


def create_app(
    settings: GatewaySettings,
    adapters: AdaptersFactory = real_adapters,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The gateway app; its adapters are opened on start-up and closed on clean-up."""
    app = web.Application(
        middlewares=[request_ids, metrics, errors], client_max_size=settings.max_body_bytes
    )
    app[SETTINGS] = settings
    app.on_response_prepare.append(on_prepare)
    app[METRICS] = GatewayMetrics()
    app.add_routes(auth_routes.routes)
    app.add_routes(chat_routes.routes)
    app.add_routes(ops_routes.routes)
    app.add_routes(stream_routes.routes)
    app.add_routes(web_routes.routes)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with adapters(settings) as opened:
            metrics = app[METRICS]
            services = build_services(settings, opened, metrics, clock)
            app[SERVICES] = services
            metrics.watch_instances(services.workers.instances)
            metrics.watch_sockets(lambda: services.stream.hub.sessions)
            idempotency = services.idempotency
            metrics.watch_idempotency(idempotency.__len__, lambda: idempotency.evicted_early)
            await opened.feed.start(services.stream.hub.publish, metrics.skipped_event)
            yield

    async def close_streams(app: web.Application) -> None:
        """Before the server waits for handlers: streams end now, with "going away"."""
        if SERVICES in app:
            app[SERVICES].stream.shut_down()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(close_streams)
    return app
