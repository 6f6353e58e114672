"""Typed keys for what the app holds, and the services the routes call."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.domain.idempotency import IdempotencyCache
from gateway.metrics import GatewayMetrics
from gateway.services.auth import AuthService
from gateway.services.chats import ChatService
from gateway.services.directory import Directory
from gateway.services.limits import RateLimits
from gateway.services.messages import MessageService
from gateway.services.ports import Workers
from gateway.services.readiness import Readiness
from gateway.services.stream import StreamService
from gateway.settings import GatewaySettings


@dataclass(frozen=True)
class Services:
    auth: AuthService
    chats: ChatService
    messages: MessageService
    readiness: Readiness
    workers: Workers
    limits: RateLimits
    directory: Directory
    stream: StreamService
    idempotency: IdempotencyCache


SETTINGS = web.AppKey("settings", GatewaySettings)
METRICS = web.AppKey("metrics", GatewayMetrics)
SERVICES = web.AppKey("services", Services)
