"""What the services need from the outside world; adapters implement these."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from contracts.api import Chat, Message, Page, ReadMarker
from contracts.events import ChatEvent
from contracts.live import Followed
from contracts.records import MessageRecord
from gateway.domain.requests import Paging
from gateway.domain.usernames import Username
from gateway.domain.users import Gender, User


class UserStore(Protocol):
    async def add(self, username: Username, password_hash: str, gender: Gender) -> User:
        """Insert a user; GatewayError 4090 when its canonical form is taken."""

    async def by_username(self, username: Username) -> User | None:
        """The user whose canonical form is `username.canonical`."""

    async def by_id(self, user_id: int) -> User | None: ...

    async def unknown(self, user_ids: Iterable[int]) -> set[int]:
        """The ids among `user_ids` that have no user."""

    async def by_ids(self, user_ids: Iterable[int]) -> list[User]:
        """The users among `user_ids` that exist."""

    async def by_usernames(self, usernames: Iterable[Username]) -> list[User]:
        """The users whose canonical names are among `usernames`."""

    async def replace_password_hash(self, user_id: int, old: str, new: str) -> bool:
        """Store `new` for the user if `old` is still stored; whether it was."""

    async def ping(self) -> None: ...


class PasswordHasher(Protocol):
    async def hash(self, password: str, *, urgent: bool = False) -> str:
        """The password's hash; may refuse with 4290 when too many wait to be hashed,
        unless `urgent` (the decoy hash sign-ins of unknown names are checked against)."""

    async def verify(self, password_hash: str, password: str) -> bool: ...

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether the hash was made with other parameters than the hasher's own."""


class MessageBus(Protocol):
    async def publish(
        self, record: MessageRecord, delivered_late: Callable[[], None] | None = None
    ) -> None:
        """Return once the record is durable; GatewayError 5031 when it cannot be.
        `delivered_late` is called if a record answered 5031 for its send timeout is
        delivered after all."""

    async def ready(self) -> bool: ...


@dataclass(frozen=True)
class InstanceView:
    id: str
    url: str
    requests: int
    failures: int
    ejections: int
    healthy: bool


class Workers(Protocol):
    """The dialogue workers' internal read API; worker error codes arrive as GatewayError."""

    async def chat(self, uid: int, cid: str) -> Chat: ...

    async def chats(self, uid: int, paging: Paging) -> Page[Chat]: ...

    async def followed(self, uid: int) -> Followed:
        """The chats a live stream of the user follows (contracts.live.Followed)."""
        ...

    async def create_chat(self, users: list[int]) -> Chat: ...

    async def add_users(self, uid: int, cid: str, users: list[int]) -> Chat: ...

    async def messages(self, uid: int, cid: str, paging: Paging) -> Page[Message]: ...

    async def mark_read(self, uid: int, cid: str, seq: int) -> ReadMarker: ...

    async def ping(self) -> None: ...

    def instances(self) -> list[InstanceView]: ...


class EventFeed(Protocol):
    """The chat events this gateway reads, from when it started."""

    async def start(
        self, deliver: Callable[[ChatEvent, float | None], None], skipped: Callable[[str], None]
    ) -> None:
        """Read in the background: `deliver(event, published_at)` each event in order,
        `skipped(reason)` for each record that is not one."""

    async def stop(self) -> None: ...

    def ready(self) -> bool:
        """True once every partition is read from a known position."""

    @property
    def status(self) -> str:
        """ "ok", or what the feed waits for."""
