"""The gateway's access log lines, in the platform's JSON log format (platform_common.logs)."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from platform_common.http import REQUEST_ID_HEADER, access_fields
from platform_common.logs import clip


class AccessLogger(AbstractAccessLogger):
    """One line per request with method, path, status, duration and request id."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, duration: float) -> None:
        self.logger.info(
            "%s %s %s",
            clip(request.method, 20),
            clip(request.path),
            response.status,
            extra={
                "request_id": response.headers.get(REQUEST_ID_HEADER, "-"),
                **access_fields(response.status, duration),
                "remote": request.remote,
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
