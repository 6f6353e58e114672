"""Chats and their messages; the caller's id always comes from the token."""

from __future__ import annotations

from aiohttp import web

from gateway.domain import requests as parse
from gateway.entrypoints.http import admit, caller, json_body, services
from gateway.services.limits import Action
from platform_common.http import json_response

routes = web.RouteTableDef()


@routes.post("/v1/chats")
async def create_chat(request: web.Request) -> web.Response:
    who = caller(request)
    admit(request, Action.CREATE_CHAT, who.user_id)
    members = parse.new_chat_members(await json_body(request), who.user_id)
    chat = await services(request).chats.create(who, members)
    return json_response(chat.model_dump(), status=201)


@routes.get("/v1/chats")
async def list_chats(request: web.Request) -> web.Response:
    who = caller(request)
    page = await services(request).chats.list_chats(who, parse.chat_paging(request.query))
    return json_response(page.model_dump())


@routes.get("/v1/chats/{cid}")
async def get_chat(request: web.Request) -> web.Response:
    who = caller(request)
    chat = await services(request).chats.get(who, parse.chat_id(request.match_info["cid"]))
    return json_response(chat.model_dump())


@routes.put("/v1/chats/{cid}/read")
async def mark_read(request: web.Request) -> web.Response:
    who = caller(request)
    admit(request, Action.MARK_READ, who.user_id)
    cid = parse.chat_id(request.match_info["cid"])
    seq = parse.read_seq(await json_body(request))
    marker = await services(request).chats.mark_read(who, cid, seq)
    return json_response(marker.model_dump())


@routes.put("/v1/chats/{cid}")
async def add_users(request: web.Request) -> web.Response:
    who = caller(request)
    admit(request, Action.ADD_MEMBERS, who.user_id)
    cid = parse.chat_id(request.match_info["cid"])
    users = parse.added_members(await json_body(request))
    chat = await services(request).chats.add_users(who, cid, users)
    return json_response(chat.model_dump())


@routes.post("/v1/chats/{cid}/messages")
async def post_message(request: web.Request) -> web.Response:
    who = caller(request)
    admit(request, Action.POST_MESSAGE, who.user_id)
    cid = parse.chat_id(request.match_info["cid"])
    text = parse.message_text(await json_body(request))
    key = parse.idempotency_key(request.headers.get("Idempotency-Key"))
    message = await services(request).messages.post(who, cid, text, key)
    return json_response(message.model_dump(), status=202)


@routes.get("/v1/chats/{cid}/messages")
async def list_messages(request: web.Request) -> web.Response:
    who = caller(request)
    cid = parse.chat_id(request.match_info["cid"])
    page = await services(request).messages.list_messages(
        who, cid, parse.message_paging(request.query)
    )
    return json_response(page.model_dump())
