"""POST /v1/auth/sign-up, /v1/auth/sign-in and /v1/auth/refresh, GET /v1/users/me and
/v1/users."""

from __future__ import annotations

from aiohttp import web

from contracts.api import UserList
from gateway.domain import requests as parse
from gateway.domain.usernames import throttle_key
from gateway.domain.users import parse_sign_in, parse_sign_up
from gateway.entrypoints.http import admit, caller, client, json_body, services
from gateway.services.limits import Action
from platform_common.http import json_response

routes = web.RouteTableDef()


@routes.post("/v1/auth/sign-up")
async def sign_up(request: web.Request) -> web.Response:
    admit(request, Action.SIGN_UP)
    form = parse_sign_up(await json_body(request))
    token = await services(request).auth.sign_up(form)
    return json_response(token.public(), status=201)


@routes.post("/v1/auth/sign-in")
async def sign_in(request: web.Request) -> web.Response:
    credentials = parse_sign_in(await json_body(request))
    # One bucket per account as the lockout counts it (accents folded: álice = alice)
    # *and* client address: keyed by the account alone, anyone could keep its owner out
    # by spending its bucket from elsewhere, even from an address locked for failures.
    address = client(request)
    admit(request, Action.SIGN_IN, f"{throttle_key(credentials.username.canonical)} {address}")
    token = await services(request).auth.sign_in(credentials, address)
    return json_response(token.public())


@routes.post("/v1/auth/refresh")
async def refresh(request: web.Request) -> web.Response:
    # The body, if any, is not read: the token is all a refresh takes.
    who = caller(request)
    admit(request, Action.REFRESH_TOKEN, who.user_id)
    token = await services(request).auth.refresh(who)
    return json_response(token.public())


@routes.get("/v1/users/me")
async def me(request: web.Request) -> web.Response:
    user = await services(request).auth.me(caller(request))
    return json_response(user.public())


@routes.get("/v1/users")
async def look_up(request: web.Request) -> web.Response:
    who = caller(request)
    admit(request, Action.LOOK_UP_USERS, who.user_id)
    query = request.query
    ids, names = parse.user_lookup(query.getall("id", []), query.getall("username", []))
    found = await services(request).directory.look_up(ids, names)
    return json_response(UserList(data=found).model_dump())
