"""ChatService (the internal API's use cases) over an in-memory ChatStore."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from contracts.errors import ErrorCode
from dialogue_worker.domain.chats import ChatView
from dialogue_worker.domain.messages import MessageView
from dialogue_worker.domain.paging import Direction, PageRequest
from dialogue_worker.errors import RequestError
from dialogue_worker.services.chats import ChatService


class MemoryChats:
    def __init__(self) -> None:
        self.chats: dict[str, ChatView] = {}
        self.history: list[MessageView] = []

    async def insert_chat(self, chat: ChatView) -> None:
        self.chats[chat.id] = chat

    async def get_chat(self, cid: str) -> ChatView | None:
        return self.chats.get(cid)

    async def chats_of(self, uid: int, request: PageRequest) -> list[ChatView]:
        mine = sorted((c for c in self.chats.values() if uid in c.users), key=lambda c: c.id)
        older = [c for c in reversed(mine) if not request.cursor or c.id < request.cursor]
        return older[: request.limit + 1]

    async def add_members(self, cid: str, member: int, users: Sequence[int]) -> ChatView | None:
        chat = self.chats.get(cid)
        if chat is None or member not in chat.users:
            return None
        self.chats[cid] = ChatView(cid, chat.users | set(users), chat.created_at)
        return self.chats[cid]

    async def messages(self, cid: str, request: PageRequest) -> list[MessageView]:
        rows = sorted((m for m in self.history if m.cid == cid), key=lambda m: m.id)
        if request.direction is Direction.NEWER:
            return [m for m in rows if m.id > (request.cursor or "")][: request.limit + 1]
        older = [m for m in reversed(rows) if not request.cursor or m.id < request.cursor]
        return older[: request.limit + 1]

    async def ping(self) -> None:
        return None


async def expect(code: ErrorCode, pending: object) -> None:
    with pytest.raises(RequestError) as err:
        await pending  # type: ignore[misc]
    assert err.value.code is code


async def test_create_get_list_and_add_members() -> None:
    store = MemoryChats()
    service = ChatService(store, clock=lambda: 1_700_000_000.7)
    first = await service.create([2, 1])
    second = await service.create([1, 3])

    assert first.users == [1, 2] and first.createdAt == 1_700_000_000
    assert (await service.get(first.id, 2)) == first
    page = await service.chats_of(1, PageRequest(1))
    assert [c.id for c in page.data] == [second.id] and page.nextCursor == second.id
    rest = await service.chats_of(1, PageRequest(1, second.id))
    assert [c.id for c in rest.data] == [first.id] and rest.nextCursor is None

    grown = await service.add_members(first.id, 1, [5, 2])
    assert grown.users == [1, 2, 5]
    await expect(ErrorCode.NOT_MEMBER, service.add_members(first.id, 9, [9]))
    await expect(ErrorCode.NOT_FOUND, service.add_members("f" * 24, 1, [9]))
    await expect(ErrorCode.NOT_MEMBER, service.get(second.id, 2))
    await expect(ErrorCode.TOO_FEW_USERS, service.create([4, 4]))


async def test_messages_page_both_ways_and_enforce_membership() -> None:
    store = MemoryChats()
    service = ChatService(store)
    chat = await service.create([1, 2])
    store.history = [MessageView(f"{i:024x}", chat.id, 1, f"m{i}", i) for i in range(1, 6)]

    newest = await service.messages(2, chat.id, PageRequest(2))
    assert [m.text for m in newest.data] == ["m5", "m4"]
    older = await service.messages(2, chat.id, PageRequest(2, newest.nextCursor))
    assert [m.text for m in older.data] == ["m3", "m2"]
    newer = await service.messages(2, chat.id, PageRequest(2, f"{1:024x}", Direction.NEWER))
    assert [m.text for m in newer.data] == ["m3", "m2"] and newer.nextCursor == f"{3:024x}"

    await expect(ErrorCode.NOT_MEMBER, service.messages(3, chat.id, PageRequest(50)))
    await expect(ErrorCode.NOT_FOUND, service.messages(1, "a" * 24, PageRequest(50)))
