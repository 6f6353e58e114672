"""Benchmark: the memory the worker's kept chat lists take per entry (CHAT_LISTS_MAX).

    .venv/bin/python -m bench.chat_lists_bench [--users 1000] [--chats 200] [--members 2]

Builds the kept lists of `--users` users, each in `--chats` chats of `--members` members
(users in groups of `--members`, each group's chats shared by all of it), through ChatLists itself
over a store held in memory, and prints the bytes traced by tracemalloc per entry as the
setting counts them (a user, a user's chat and a kept chat's member count one each),
beside the entries. No services: what is measured is the worker's own structures (the
chats' documents as ChatView, the users' sets and marker maps).
"""

from __future__ import annotations

import argparse
import asyncio
import tracemalloc
from collections.abc import Sequence

from bench._common import number
from contracts.api import LastMessage
from dialogue_worker.domain.chats import ChatView
from dialogue_worker.services.chat_lists import ChatLists


class Store:
    """Users in groups of `members`: each group shares `chats` chats, all of it in each.
    Every read makes its documents anew, as reading MongoDB does."""

    def __init__(self, users: int, chats: int, members: int) -> None:
        self._chats, self._members = chats, members
        self._users = users

    def _group(self, uid: int) -> tuple[int, list[int]]:
        group = (uid - 1) // self._members
        first = group * self._members + 1
        return group, list(range(first, min(first + self._members, self._users + 1)))

    async def chats_of(self, uid: int) -> list[ChatView]:
        group, people = self._group(uid)
        found = []
        for k in range(self._chats):
            n = group * self._chats + k
            last = LastMessage(id=f"{n + 1:024x}", seq=9, uid=uid, text="x" * 100,
                               createdAt=1_700_000_000)  # fmt: skip
            found.append(
                ChatView(f"{n:024x}", frozenset(people), 1_700_000_000, 1.7e9, 9, 1.7e9, last)
            )
        return found

    async def read_markers(self, uid: int) -> dict[str, int]:
        return {chat.id: 5 for chat in await self.chats_of(uid)}


class Caught:
    async def caught_up(self, within: float) -> bool:
        return True


async def main(users: int, chats: int, members: int) -> None:
    store = Store(users, chats, members)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    lists = ChatLists(store, Caught(), most=2**31 - 1, ttl=3600.0)  # type: ignore[arg-type]
    for uid in range(1, users + 1):
        await lists.lists(uid)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(
        f"{users:,} users, each in {chats} chats of {members} members: {lists.size:,} entries, "
        f"{used / 2**20:,.1f} MiB traced, {used / lists.size:,.0f} bytes per entry "
        "(the chats' documents included: each kept chat's ChatView and preview)"
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=number(int, 1), default=1_000)
    parser.add_argument("--chats", type=number(int, 1), default=200)
    parser.add_argument("--members", type=number(int, 2), default=2)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    asyncio.run(main(args.users, args.chats, args.members))
