"""Posting messages to Kafka and reading them back through the workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Generic, TypeVar

from contracts.api import Message, Page
from contracts.ids import new_id
from contracts.records import MessageRecord
from gateway.domain.idempotency import Attempt, IdempotencyCache, request_digest
from gateway.domain.requests import Paging
from gateway.domain.tokens import Principal
from gateway.errors import GatewayError
from gateway.services.chats import Membership
from gateway.services.ports import MessageBus, Workers

K = TypeVar("K", bound=Hashable)


class KeyedLocks(Generic[K]):
    """One asyncio.Lock per key, dropped when nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[K, tuple[asyncio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


class MessageService:
    def __init__(
        self,
        workers: Workers,
        bus: MessageBus,
        membership: Membership,
        idempotency: IdempotencyCache,
        clock: Callable[[], float],
        elapsed: Callable[[], float] | None = None,
    ) -> None:
        """`clock` is wall time (createdAt); `elapsed` (default: `clock`) ages idempotency
        entries and should be monotonic: on the wall clock a step forward expired keys
        early, and retries within the window then made second messages."""
        self._workers = workers
        self._bus = bus
        self._membership = membership
        self._idempotency = idempotency
        self._clock = clock
        self._elapsed = clock if elapsed is None else elapsed
        self._key_locks: KeyedLocks[tuple[int, str]] = KeyedLocks()

    async def post(self, caller: Principal, cid: str, text: str, key: str | None) -> Message:
        """The message, once Kafka has acknowledged its record (5031 if it cannot)."""
        if key is None:
            await self._membership.require(caller.user_id, cid)
            return await self._send(self._new_message(caller, cid, text))
        async with self._key_locks.hold((caller.user_id, key)):
            return await self._post_once(caller, cid, text, key)

    async def list_messages(self, caller: Principal, cid: str, paging: Paging) -> Page[Message]:
        return await self._workers.messages(caller.user_id, cid, paging)

    async def _post_once(self, caller: Principal, cid: str, text: str, key: str) -> Message:
        uid, digest = caller.user_id, request_digest(cid, text)
        earlier = self._idempotency.lookup(uid, key, digest, self._elapsed())
        if earlier is None:
            message = self._new_message(caller, cid, text)
        else:  # same chat and text (the digest matched): the same message again
            message = Message(
                id=earlier.message_id, cid=cid, uid=uid, createdAt=earlier.created_at, text=text
            )
            if earlier.acked:
                # Answered from here, before any worker is asked: the entry was made only
                # after membership passed, and members are never removed. A retry whose
                # first answer was lost used to get 5030 while no worker answered.
                return message
        await self._membership.require(uid, cid)
        attempt = Attempt(message.id, message.createdAt, digest, acked=False)
        self._idempotency.record(uid, key, attempt, self._elapsed())
        try:
            await self._send(message, lambda: self._delivered_late(uid, key, attempt))
        except BaseException:
            # The key's time counts again from here: a retry made after this 5031 (one
            # queued behind this send, or one that waited Retry-After) found the entry
            # expired when the send had lasted about IDEMPOTENCY_TTL, and made a second
            # message while Kafka may still deliver this one (found in review). An earlier
            # send of this message delivered late meanwhile marked it acknowledged: kept.
            entry = self._entry_of(uid, key, attempt) or attempt
            self._idempotency.record(uid, key, entry, self._elapsed())
            raise
        self._idempotency.record(uid, key, replace(attempt, acked=True), self._elapsed())
        return message

    def _delivered_late(self, uid: int, key: str, attempt: Attempt) -> None:
        """A record answered 5031 was delivered after all: a retry with its key is answered
        from here. Before, it was sent again, and with Kafka away at that moment the client
        got a second 5031 for a message that was stored (found in review)."""
        entry = self._entry_of(uid, key, attempt)
        if entry is not None and not entry.acked:
            self._idempotency.record(uid, key, replace(entry, acked=True), self._elapsed())

    def _entry_of(self, uid: int, key: str, attempt: Attempt) -> Attempt | None:
        """The key's entry while it is still `attempt`'s message; None when it expired,
        was evicted or the key was used again for another message."""
        try:
            entry = self._idempotency.lookup(uid, key, attempt.digest, self._elapsed())
        except GatewayError:  # the key was used again for another message
            return None
        return entry if entry is not None and entry.message_id == attempt.message_id else None

    def _new_message(self, caller: Principal, cid: str, text: str) -> Message:
        created = int(self._clock())
        return Message(id=new_id(), cid=cid, uid=caller.user_id, createdAt=created, text=text)

    async def _send(
        self, message: Message, delivered_late: Callable[[], None] | None = None
    ) -> Message:
        record = MessageRecord(
            v=1,
            id=message.id,
            cid=message.cid,
            uid=message.uid,
            text=message.text,
            createdAt=message.createdAt,
        )
        await self._bus.publish(record, delivered_late)
        return message
