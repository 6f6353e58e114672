"""The internal read/write API's use cases: chats and message history."""

from __future__ import annotations

import time
from collections.abc import Callable

from contracts.api import Chat, Message, Page
from contracts.errors import ErrorCode
from contracts.ids import new_id
from dialogue_worker.domain.chats import ChatView, new_chat_users, require_member
from dialogue_worker.domain.paging import PageRequest, cut_page
from dialogue_worker.errors import RequestError
from dialogue_worker.services.ports import ChatStore


class ChatService:
    """Each method takes validated request values and returns an API model."""

    def __init__(self, store: ChatStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def create(self, users: list[int]) -> Chat:
        chat = ChatView(new_id(), frozenset(new_chat_users(users)), int(self._clock()))
        await self._store.insert_chat(chat)
        return chat.to_api()

    async def get(self, cid: str, uid: int) -> Chat:
        return require_member(await self._store.get_chat(cid), uid).to_api()

    async def chats_of(self, uid: int, page: PageRequest) -> Page[Chat]:
        chats, cursor = cut_page(await self._store.chats_of(uid, page), page)
        return Page[Chat](data=[c.to_api() for c in chats], nextCursor=cursor)

    async def add_members(self, cid: str, uid: int, users: list[int]) -> Chat:
        updated = await self._store.add_members(cid, uid, users)
        if updated is None:  # unknown chat or not a member: tell which
            require_member(await self._store.get_chat(cid), uid)
            # A member of an existing chat cannot be refused; chats are never deleted.
            raise RequestError(ErrorCode.NOT_FOUND, "chat not found")
        return updated.to_api()

    async def messages(self, uid: int, cid: str, page: PageRequest) -> Page[Message]:
        require_member(await self._store.get_chat(cid), uid)
        messages, cursor = cut_page(await self._store.messages(cid, page), page)
        return Page[Message](data=[m.to_api() for m in messages], nextCursor=cursor)
