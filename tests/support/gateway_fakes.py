"""Hand-written fakes of the gateway's adapters: users, hasher, Kafka bus and workers."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from contracts.api import Chat, Message, Page, ReadMarker
from contracts.errors import ErrorCode
from contracts.events import ChatEvent
from contracts.ids import new_id
from contracts.live import Followed
from contracts.records import MessageRecord
from gateway.bootstrap import Adapters
from gateway.domain.requests import Paging
from gateway.domain.usernames import Username
from gateway.domain.users import Gender, User
from gateway.errors import GatewayError
from gateway.services.ports import InstanceView
from gateway.settings import GatewaySettings


class FakeUsers:
    def __init__(self) -> None:
        self.users: dict[int, User] = {}
        self.canonical: dict[str, int] = {}
        self.ids = itertools.count(1)
        self.down = False
        self.lookups: list[str] = []

    def _check(self) -> None:
        if self.down:
            raise GatewayError(ErrorCode.USER_STORE_UNAVAILABLE, "user store unavailable")

    async def add(self, username: Username, password_hash: str, gender: Gender) -> User:
        self._check()
        if username.canonical in self.canonical:
            raise GatewayError(ErrorCode.USERNAME_TAKEN, "username is taken")
        user = User(next(self.ids), username.display, password_hash, gender, 1_700_000_000)
        self.users[user.id] = user
        self.canonical[username.canonical] = user.id
        return user

    async def by_username(self, username: Username) -> User | None:
        self._check()
        self.lookups.append(username.display)
        uid = self.canonical.get(username.canonical)
        return None if uid is None else self.users[uid]

    async def by_id(self, user_id: int) -> User | None:
        self._check()
        return self.users.get(user_id)

    async def unknown(self, user_ids: Iterable[int]) -> set[int]:
        self._check()
        return set(user_ids) - set(self.users)

    async def by_ids(self, user_ids: Iterable[int]) -> list[User]:
        self._check()
        return [self.users[uid] for uid in set(user_ids) if uid in self.users]

    async def by_usernames(self, usernames: Iterable[Username]) -> list[User]:
        self._check()
        uids = {self.canonical.get(u.canonical) for u in usernames}
        return [self.users[uid] for uid in uids if uid is not None]

    async def replace_password_hash(self, user_id: int, old: str, new: str) -> bool:
        self._check()
        user = self.users.get(user_id)
        if user is None or user.password_hash != old:
            return False
        self.users[user_id] = dataclasses.replace(user, password_hash=new)
        return True

    async def ping(self) -> None:
        self._check()


class FakeHasher:
    """Yields to the loop while it "hashes", as argon2 in a thread does."""

    def __init__(self) -> None:
        self.verified = 0

    async def hash(self, password: str, *, urgent: bool = False) -> str:
        await asyncio.sleep(0)
        return f"hashed:{password}"

    async def verify(self, password_hash: str, password: str) -> bool:
        self.verified += 1
        for _ in range(3):
            await asyncio.sleep(0)
        return password_hash == f"hashed:{password}"

    def needs_rehash(self, password_hash: str) -> bool:
        return False


class FakeBus:
    def __init__(self) -> None:
        self.records: list[MessageRecord] = []
        self.down = False

    async def publish(
        self, record: MessageRecord, delivered_late: Callable[[], None] | None = None
    ) -> None:
        if self.down:
            raise GatewayError(ErrorCode.BUS_UNAVAILABLE, "message bus unavailable")
        self.records.append(record)

    async def ready(self) -> bool:
        return not self.down


class FakeWorkers:
    """An in-memory worker API with the worker's error codes."""

    def __init__(self, bus: FakeBus) -> None:
        self.chats_by_id: dict[str, Chat] = {}
        self.bus = bus
        self.calls: list[str] = []
        self.crash = False

    def _chat(self, uid: int, cid: str) -> Chat:
        if self.crash:
            raise RuntimeError("boom")
        chat = self.chats_by_id.get(cid)
        if chat is None:
            raise GatewayError(ErrorCode.NOT_FOUND, "chat not found")
        if uid not in chat.users:
            raise GatewayError(ErrorCode.NOT_MEMBER, "user does not belong to chat")
        return chat

    async def chat(self, uid: int, cid: str) -> Chat:
        self.calls.append("chat")
        return self._chat(uid, cid)

    async def chats(self, uid: int, paging: Paging) -> Page[Chat]:
        if self.crash:
            raise RuntimeError("boom")
        mine = [c for c in self.chats_by_id.values() if uid in c.users]
        return Page[Chat](data=sorted(mine, key=lambda c: c.id, reverse=True)[: paging.limit])

    async def followed(self, uid: int) -> Followed:
        if self.crash:
            raise RuntimeError("boom")
        mine = [c for c in self.chats_by_id.values() if uid in c.users]
        return Followed(data={c.id: c.lastSeq for c in mine}, more=False)

    async def create_chat(self, users: list[int]) -> Chat:
        chat = Chat(id=new_id(), users=users, createdAt=1_700_000_000)
        self.chats_by_id[chat.id] = chat
        return chat

    async def add_users(self, uid: int, cid: str, users: list[int]) -> Chat:
        chat = self._chat(uid, cid)
        merged = Chat(id=cid, users=list(dict.fromkeys(chat.users + users)), createdAt=1)
        self.chats_by_id[cid] = merged
        return merged

    async def mark_read(self, uid: int, cid: str, seq: int) -> ReadMarker:
        self._chat(uid, cid)
        return ReadMarker(cid=cid, seq=seq, unread=0)

    async def messages(self, uid: int, cid: str, paging: Paging) -> Page[Message]:
        self._chat(uid, cid)
        found = [
            Message(id=r.id, cid=r.cid, uid=r.uid, createdAt=r.createdAt, text=r.text)
            for r in reversed(self.bus.records)
            if r.cid == cid
        ]
        return Page[Message](data=found[: paging.limit])

    async def ping(self) -> None:
        pass

    def instances(self) -> list[InstanceView]:
        return [InstanceView("w1", "http://127.0.0.1:1", 3, 0, 0, True)]


class FakeFeed:
    """Events handed to the hub by the test, as the Kafka feed would."""

    def __init__(self) -> None:
        self.positioned = True
        self._deliver: Callable[[ChatEvent, float | None], None] | None = None

    async def start(
        self, deliver: Callable[[ChatEvent, float | None], None], skipped: Callable[[str], None]
    ) -> None:
        self._deliver = deliver

    async def stop(self) -> None:
        self._deliver = None

    def ready(self) -> bool:
        return self.positioned

    @property
    def status(self) -> str:
        return "ok" if self.positioned else "not positioned"

    def publish(self, event: ChatEvent, published: float | None = None) -> None:
        assert self._deliver is not None, "the app has not started the feed"
        self._deliver(event, published)


class World:
    def __init__(self) -> None:
        self.users = FakeUsers()
        self.bus = FakeBus()
        self.workers = FakeWorkers(self.bus)
        self.feed = FakeFeed()
        self.hasher = FakeHasher()

    @asynccontextmanager
    async def adapters(self, settings: GatewaySettings) -> AsyncIterator[Adapters]:
        yield Adapters(self.users, self.hasher, self.bus, self.workers, self.feed)
