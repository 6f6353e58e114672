"""Chats: created and changed synchronously through a worker, members checked in MySQL."""

from __future__ import annotations

from collections.abc import Callable

from contracts.api import Chat, Page, ReadMarker
from contracts.errors import ErrorCode
from gateway.domain.requests import Paging
from gateway.domain.tokens import Principal
from gateway.domain.ttl_cache import TtlCache
from gateway.errors import GatewayError
from gateway.services.ports import UserStore, Workers


class Membership:
    """Confirms chat membership through a worker read, remembering yeses for a short while.

    Only positive answers are cached: members are never removed, so a cached yes
    stays true, while a no may turn into a yes with the next PUT.
    """

    def __init__(
        self, workers: Workers, ttl: float, clock: Callable[[], float], max_entries: int = 100_000
    ) -> None:
        self._workers = workers
        self._clock = clock
        self._known: TtlCache[tuple[int, str], bool] = TtlCache(ttl, max_entries)

    async def require(self, uid: int, cid: str) -> None:
        """Return if `uid` is in chat `cid`; 4040/4031 from the worker otherwise."""
        if self._known.get((uid, cid), self._clock()):
            return
        await self._workers.chat(uid, cid)
        self._known.put((uid, cid), True, self._clock())


class ChatService:
    def __init__(self, workers: Workers, users: UserStore, membership: Membership) -> None:
        self._workers = workers
        self._users = users
        self._membership = membership

    async def create(self, caller: Principal, members: list[int]) -> Chat:
        await self._require_users(members)
        return await self._workers.create_chat(members)

    async def get(self, caller: Principal, cid: str) -> Chat:
        return await self._workers.chat(caller.user_id, cid)

    async def list_chats(self, caller: Principal, paging: Paging) -> Page[Chat]:
        return await self._workers.chats(caller.user_id, paging)

    async def mark_read(self, caller: Principal, cid: str, seq: int) -> ReadMarker:
        """Move the caller's read marker forward (clamped to the chat's newest seq)."""
        return await self._workers.mark_read(caller.user_id, cid, seq)

    async def add_users(self, caller: Principal, cid: str, users: list[int]) -> Chat:
        await self._membership.require(caller.user_id, cid)
        await self._require_users(users)
        return await self._workers.add_users(caller.user_id, cid, users)

    async def _require_users(self, users: list[int]) -> None:
        unknown = await self._users.unknown(users)
        if unknown:
            ids = ", ".join(str(u) for u in sorted(unknown))
            raise GatewayError(ErrorCode.NOT_FOUND, f"unknown user ids: {ids}")
