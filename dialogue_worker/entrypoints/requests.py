"""Decoding the internal API's query strings and bodies into typed requests.

The values follow contracts.requests, the rules the gateway applied before; a value out
of them is a RequestProblem (4001/4002/4005/4000) that the edge turns into an error body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from contracts import requests as rules
from contracts.errors import ErrorCode
from contracts.requests import RequestProblem
from dialogue_worker.domain.chat_list import ListCursor
from dialogue_worker.domain.history import Direction, HistoryQuery

#: Seconds a request body may take to arrive once its head has.
BODY_WITHIN = 30.0


@dataclass(frozen=True)
class ChatsQuery:
    uid: int
    limit: int
    cursor: ListCursor | None


@dataclass(frozen=True)
class MessagesQuery:
    uid: int
    cid: str
    history: HistoryQuery


def caller(query: Mapping[str, str]) -> int:
    """`?uid=`: the user a request is made for, given once (4002 when given twice: the
    first used to win silently, and a proxy reading the last would act for another user)."""
    return rules.user_id(_once(query, "uid", ErrorCode.BAD_USER_ID))


def _once(query: Mapping[str, str], name: str, code: ErrorCode) -> str | None:
    getall = getattr(query, "getall", None)
    if getall is not None and len(getall(name, ())) > 1:
        raise RequestProblem(code, f"{name} is given more than once")
    return query.get(name)


def chats_query(query: Mapping[str, str]) -> ChatsQuery:
    """`?uid=&limit=&cursor=`: the cursor is a nextCursor of an earlier page."""
    rules.paging_once(query, rules.LIST_PAGING)
    raw = rules.list_cursor(query.get("cursor"))
    cursor = None if raw is None else ListCursor.decode(raw)
    return ChatsQuery(caller(query), rules.limit(query.get("limit")), cursor)


def messages_query(query: Mapping[str, str]) -> MessagesQuery:
    """`?uid=&cid=&limit=` and at most one of `before`/`after` (message ids) and
    `beforeSeq`/`afterSeq` (seqs)."""
    rules.paging_once(query, rules.HISTORY_PAGING)
    direction, cursor = rules.history_cursor(query)
    history = HistoryQuery(rules.limit(query.get("limit")), cursor, Direction(direction))
    uid = caller(query)
    return MessagesQuery(uid, rules.chat_id(_once(query, "cid", ErrorCode.BAD_CHAT_ID)), history)


async def json_object(request: web.Request) -> object:
    try:
        async with asyncio.timeout(BODY_WITHIN):
            raw = await request.read()
        return orjson.loads(raw)
    except TimeoutError:  # a body that never comes held the request, and its connection
        raise RequestProblem(
            ErrorCode.REQUEST_TIMEOUT, f"the body did not arrive within {BODY_WITHIN:g} seconds"
        ) from None
    except RequestPayloadError:  # broken chunks, a Content-Encoding the body does not have
        raise RequestProblem(ErrorCode.MALFORMED, "request body could not be decoded") from None
    except orjson.JSONDecodeError as exc:
        raise RequestProblem(ErrorCode.MALFORMED, f"malformed JSON: {exc}") from None


async def _users(request: web.Request) -> object:
    body = await json_object(request)
    if not isinstance(body, dict):
        raise RequestProblem(ErrorCode.MALFORMED, 'body must be {"users": [<user id>, ...]}')
    return body.get("users")


async def new_chat_body(request: web.Request) -> list[int]:
    """The members of a chat to create, from `{"users": [<user id>, ...]}` (>= 2, 4004)."""
    return rules.new_chat_users(await _users(request))


async def added_users_body(request: web.Request) -> list[int]:
    """The users to add to a chat, from `{"users": [<user id>, ...]}` (>= 1, 4000)."""
    return rules.added_users(await _users(request))


async def read_body(request: web.Request) -> int:
    """The `seq` of a `{"seq": N}` body."""
    return rules.read_seq(await json_object(request))
