"""What the load processes are given: the users, the chats, where the platform listens
and how fast to go. Written by the orchestrator as plan.json, read once by each load."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: The users talk from several loopback addresses (many clients, as in production), so
#: the gateway's per-address limits see many clients instead of one.
FIRST_ADDRESS = 2


def source_address(index: int, addresses: int) -> str:
    """The loopback address user `index` connects from: 127.0.0.2, 127.0.0.3, ..."""
    return f"127.0.0.{FIRST_ADDRESS + index % addresses}"


@dataclass
class Account:
    index: int
    uid: int
    username: str
    password: str
    token: str
    address: str


@dataclass(frozen=True)
class Chat:
    cid: str
    members: list[int]  # indexes into Plan.accounts
    hot: bool


@dataclass
class Plan:
    run: str  # short id of the run, in usernames and message texts
    api_url: str
    kafka_bootstrap: str
    topic: str
    rates: dict[str, float]  # operation -> per second (REST load process)
    sockets: int
    pages: int
    in_flight: int
    hot_share: float
    seed: int
    accounts: list[Account] = field(default_factory=list)
    chats: list[Chat] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> Plan:
        data: dict[str, Any] = json.loads(path.read_text())
        accounts = [Account(**a) for a in data.pop("accounts")]
        chats = [Chat(**c) for c in data.pop("chats")]
        return cls(**data, accounts=accounts, chats=chats)

    def chats_of(self) -> dict[int, list[Chat]]:
        """Account index -> the chats it is a member of."""
        found: dict[int, list[Chat]] = {a.index: [] for a in self.accounts}
        for chat in self.chats:
            for member in chat.members:
                found[member].append(chat)
        return found


class ChatPicker:
    """Chooses the chat of the next post or read: hot chats get `hot_share` of them."""

    def __init__(self, plan: Plan, rng: random.Random) -> None:
        self.hot = [c for c in plan.chats if c.hot]
        self.ordinary = [c for c in plan.chats if not c.hot]
        self.share = plan.hot_share if self.ordinary else 1.0
        self.rng = rng

    def __call__(self) -> Chat:
        if self.hot and self.rng.random() < self.share:
            return self.rng.choice(self.hot)
        return self.rng.choice(self.ordinary)


def memberships(
    users: int, chats: int, hot_chats: int, hot_members: int, seed: int
) -> list[tuple[list[int], bool]]:
    """(member indexes, hot) of every chat: the first ordinary chats pair users up (the
    last of an odd number with user 0), so with `users <= 2 * chats` (settings.py checks
    it) each user is in at least one chat; the rest have 2-3 random members."""
    rng = random.Random(seed)
    made: list[tuple[list[int], bool]] = []
    for k in range(chats):
        if 2 * k < users:
            members = [2 * k, (2 * k + 1) % users]
        else:
            members = rng.sample(range(users), min(users, rng.choice((2, 2, 3))))
        made.append((members, False))
    for _ in range(hot_chats):
        made.append((rng.sample(range(users), min(users, hot_members)), True))
    return made
