"""Structured (JSON line) logging; every line carries the request id of its request."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

request_id: ContextVar[str] = ContextVar("request_id", default="-")

#: Characters of a client-supplied string (path, header, name) a log line keeps.
CLIP = 200


def clip(text: str, limit: int = CLIP) -> str:
    """`text` cut to `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text) - limit} more)"


_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", None) or request_id.get(),
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str) -> None:
    """Send JSON lines to stderr at `level` (called once by `python -m gateway`)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class AccessLogger(AbstractAccessLogger):
    """One line per request with method, path, status, duration and request id."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, duration: float) -> None:
        self.logger.info(
            "%s %s %s",
            clip(request.method, 20),
            clip(request.path),
            response.status,
            extra={
                "request_id": response.headers.get("X-Request-ID", "-"),
                "status": response.status,
                "duration_ms": round(duration * 1000, 2),
                "remote": request.remote,
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
