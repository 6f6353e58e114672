"""Decoding the internal API's query strings and bodies into typed requests.

The values follow contracts.requests, the rules the gateway applied before; a value out
of them is a RequestProblem (4001/4002/4005/4000) that the edge turns into an error body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from aiohttp import web

from contracts import requests as rules
from contracts.errors import ErrorCode
from contracts.requests import RequestProblem
from dialogue_worker.domain.paging import Direction, PageRequest


@dataclass(frozen=True)
class ChatsQuery:
    uid: int
    page: PageRequest


@dataclass(frozen=True)
class MessagesQuery:
    uid: int
    cid: str
    page: PageRequest


def caller(query: Mapping[str, str]) -> int:
    """`?uid=`: the user a request is made for."""
    return rules.user_id(query.get("uid"))


def chats_query(query: Mapping[str, str]) -> ChatsQuery:
    """`?uid=&limit=&cursor=`: the chats older than cursor (the last id of a page)."""
    cursor = rules.cursor_id("cursor", query.get("cursor"))
    return ChatsQuery(caller(query), PageRequest(rules.limit(query.get("limit")), cursor))


def messages_query(query: Mapping[str, str]) -> MessagesQuery:
    """`?uid=&cid=&limit=&before=&after=`: at most one of before/after."""
    before, after = rules.one_direction(query)
    limit = rules.limit(query.get("limit"))
    page = (
        PageRequest(limit, after, Direction.NEWER)
        if after
        else PageRequest(limit, before, Direction.OLDER)
    )
    return MessagesQuery(caller(query), rules.chat_id(query.get("cid")), page)


async def users_body(request: web.Request) -> list[int]:
    """The `users` of a `{"users": [<user id>, ...]}` body."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise RequestProblem(ErrorCode.MALFORMED, f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestProblem(ErrorCode.MALFORMED, 'body must be {"users": [<user id>, ...]}')
    return rules.user_ids(body.get("users"))
