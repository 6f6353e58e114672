"""The internal read/write API's use cases: chats and message history."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from contracts.api import Chat, Message, Page
from contracts.errors import ErrorCode
from contracts.ids import new_id
from dialogue_worker.domain.chats import (
    ChatView,
    new_chat_users,
    parse_cid,
    parse_uid,
    parse_users,
    require_member,
)
from dialogue_worker.domain.paging import chats_page_request, cut_page, messages_page_request
from dialogue_worker.errors import RequestError
from dialogue_worker.services.ports import ChatStore


class ChatService:
    """Each method takes raw request values, validates them and returns an API model."""

    def __init__(self, store: ChatStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def create(self, body: object) -> Chat:
        chat = ChatView(new_id(), frozenset(new_chat_users(body)), int(self._clock()))
        await self._store.insert_chat(chat)
        return chat.to_api()

    async def get(self, cid: str, uid: str | None) -> Chat:
        chat_id, user = parse_cid(cid), parse_uid(uid)
        return require_member(await self._store.get_chat(chat_id), user).to_api()

    async def list(self, query: Mapping[str, str]) -> Page[Chat]:
        user = parse_uid(query.get("uid"))
        request = chats_page_request(query)
        page, cursor = cut_page(await self._store.chats_of(user, request), request)
        return Page[Chat](data=[c.to_api() for c in page], nextCursor=cursor)

    async def add_members(self, cid: str, uid: str | None, body: object) -> Chat:
        chat_id, user, users = parse_cid(cid), parse_uid(uid), parse_users(body)
        updated = await self._store.add_members(chat_id, user, users)
        if updated is None:  # unknown chat or not a member: tell which
            require_member(await self._store.get_chat(chat_id), user)
            # A member of an existing chat cannot be refused; chats are never deleted.
            raise RequestError(ErrorCode.NOT_FOUND, "chat not found")
        return updated.to_api()

    async def messages(self, query: Mapping[str, str]) -> Page[Message]:
        user, chat_id = parse_uid(query.get("uid")), parse_cid(query.get("cid"))
        request = messages_page_request(query)
        require_member(await self._store.get_chat(chat_id), user)
        page, cursor = cut_page(await self._store.messages(chat_id, request), request)
        return Page[Message](data=[m.to_api() for m in page], nextCursor=cursor)
