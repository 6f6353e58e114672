"""The internal HTTP API: decode the request, call a service, encode the answer."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from contracts import requests as rules
from dialogue_worker.entrypoints import requests as decode
from dialogue_worker.metrics import CONTENT_TYPE, WorkerMetrics
from dialogue_worker.services.chats import ChatService
from dialogue_worker.services.health import WorkerHealth
from platform_common.http import json_response


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return json_response(model.model_dump(mode="json"), status)


class Pong(BaseModel):
    object: str = "pong"
    id: str
    status: str
    reason: str | None


class InternalApi:
    def __init__(
        self, chats: ChatService, health: WorkerHealth, metrics: WorkerMetrics, instance_id: str
    ) -> None:
        self._chats = chats
        self._health = health
        self._metrics = metrics
        self._instance_id = instance_id

    def install(self, app: web.Application) -> None:
        # Before faust mounts its index page at "/" (it cannot be turned off): the first
        # route of a path answers, and "/" is no route of this API.
        app.router.add_route("*", "/", self.no_route)
        app.router.add_get("/ping", self.ping)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/chats", self.list_chats)
        app.router.add_get("/followed", self.followed)
        app.router.add_post("/chats", self.create_chat)
        app.router.add_get("/chats/{cid}", self.get_chat)
        app.router.add_put("/chats/{cid}", self.add_members)
        app.router.add_get("/messages", self.list_messages)
        app.router.add_put("/chats/{cid}/read", self.mark_read)

    async def no_route(self, request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    async def ping(self, request: web.Request) -> web.Response:
        """200 whenever the process serves HTTP; the health itself is in the body."""
        state = await self._health.recent()
        return _json(Pong(id=self._instance_id, status=state.status.value, reason=state.reason))

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def list_chats(self, request: web.Request) -> web.Response:
        query = decode.chats_query(request.query)
        return _json(await self._chats.chats_of(query.uid, query.limit, query.cursor))

    async def followed(self, request: web.Request) -> web.Response:
        return _json(await self._chats.followed(decode.caller(request.query)))

    async def create_chat(self, request: web.Request) -> web.Response:
        return _json(await self._chats.create(await decode.new_chat_body(request)), status=201)

    async def get_chat(self, request: web.Request) -> web.Response:
        cid = rules.chat_id(request.match_info["cid"])
        return _json(await self._chats.get(cid, decode.caller(request.query)))

    async def add_members(self, request: web.Request) -> web.Response:
        cid, uid = rules.chat_id(request.match_info["cid"]), decode.caller(request.query)
        return _json(
            await self._chats.add_members(cid, uid, await decode.added_users_body(request))
        )

    async def list_messages(self, request: web.Request) -> web.Response:
        query = decode.messages_query(request.query)
        return _json(await self._chats.messages(query.uid, query.cid, query.history))

    async def mark_read(self, request: web.Request) -> web.Response:
        cid, uid = rules.chat_id(request.match_info["cid"]), decode.caller(request.query)
        return _json(await self._chats.mark_read(cid, uid, await decode.read_body(request)))
