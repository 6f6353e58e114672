"""A bounded map whose entries expire; time is passed in, so it is pure."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Entries live `ttl` seconds; beyond `max_entries` the oldest written goes first."""

    def __init__(self, ttl: float, max_entries: int) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, now: float) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= now:
            del self._items[key]
            return None
        return value

    def put(self, key: K, value: V, now: float) -> None:
        self._items.pop(key, None)
        self._items[key] = (now + self._ttl, value)
        self._evict(now)

    def discard(self, key: K) -> None:
        self._items.pop(key, None)

    def _evict(self, now: float) -> None:
        while self._items:
            key, (expires, _) = next(iter(self._items.items()))
            if expires > now and len(self._items) <= self._max:
                break
            del self._items[key]

    def __len__(self) -> int:
        return len(self._items)
