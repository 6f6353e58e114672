"""A short-lived cache of chat members for the persistence agent's membership check."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping


class MembershipCache:
    """Members per chat id, trusted for `ttl` seconds.

    Only positive answers come from the cache: a message the cached members would
    reject is checked again against MongoDB first (see records.needs_fresh_check),
    so a user added a moment ago is never dead-lettered because of the cache.
    """

    def __init__(
        self, ttl: float, clock: Callable[[], float] = time.monotonic, max_chats: int = 100_000
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._max = max_chats
        self._entries: dict[str, tuple[float, frozenset[int]]] = {}

    def known(self, cids: Collection[str]) -> dict[str, frozenset[int]]:
        now = self._clock()
        found = {}
        for cid in cids:
            entry = self._entries.get(cid)
            if entry is not None and entry[0] > now:
                found[cid] = entry[1]
        return found

    def remember(self, members: Mapping[str, frozenset[int]]) -> None:
        if len(self._entries) + len(members) > self._max:
            self._entries.clear()  # cheap bound; the cache refills within one batch
        expires = self._clock() + self._ttl
        for cid, users in members.items():
            self._entries[cid] = (expires, users)
