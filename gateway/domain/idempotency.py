"""Idempotency-Key bookkeeping for message posts, per gateway process.

An entry keeps the message id given out, its time, whether Kafka acknowledged it and
a SHA-256 of the request (chat id and text), never the text itself. Entries live
`ttl` seconds and are bounded three ways: in total count, in estimated bytes and per
user (a user past the limit loses his own oldest key, nobody else's). When the first two
bounds are full the oldest entries go before their time; `evicted_early` counts those,
so an operator can see that keys live shorter than `ttl` and raise the bounds.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from contracts.errors import ErrorCode
from gateway.errors import GatewayError

#: Bytes an entry costs besides its key (digest, id, tuples, dict and order slots), and a
#: user's own key table: measured with tracemalloc on CPython 3.11 (2026-12-07: 710-750
#: bytes an entry with 32-character keys, ~310 more for a user's first, varying by a few
#: percent between runs), rounded up with room (bench/idempotency_bench.py prints the
#: ratio). The first figures (400, no user table) were from sys.getsizeof, which leaves
#: out what an object points to: 100,000 users of one key took 2.6 times
#: IDEMPOTENCY_MAX_BYTES. 800 held for a cache filled once, not for one held at its bound
#: while posts go through it (each key recorded twice, the oldest evicted, the dicts'
#: deleted slots kept): 0.93-1.04 of the estimate (found in review, 2026-12-08); at 950,
#: 0.82-0.88 (the bench's second table; filled once 0.71-0.74).
ENTRY_OVERHEAD = 950
USER_OVERHEAD = 450


def request_digest(cid: str, text: str) -> bytes:
    """What a key stands for: the SHA-256 of the chat id and the text."""
    return hashlib.sha256(f"{cid}\0{text}".encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class Attempt:
    """The message id a key was given, its time, and whether Kafka has acknowledged it."""

    message_id: str
    created_at: int
    digest: bytes
    acked: bool


@dataclass(frozen=True)
class _Entry:
    expires: float
    attempt: Attempt
    size: int


class IdempotencyCache:
    """Remembers, per (user, key), the message id given out and whether it was delivered.

    A failed or timed-out send keeps the same id, so a retry re-produces the same
    record (the worker stores it once); an acknowledged one is answered from here.
    """

    def __init__(self, ttl: float, max_entries: int, max_bytes: int, keys_per_user: int) -> None:
        self._ttl = ttl
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._per_user_max = keys_per_user
        self._entries: OrderedDict[tuple[int, str], _Entry] = OrderedDict()
        self._per_user: dict[int, OrderedDict[str, None]] = {}
        self.bytes = 0
        #: Entries dropped before their ttl because the count or byte bound was full.
        self.evicted_early = 0

    def lookup(self, uid: int, key: str, digest: bytes, now: float) -> Attempt | None:
        """The earlier attempt for this key, or None; 4000 if the key was used for another body."""
        entry = self._entries.get((uid, key))
        if entry is None or entry.expires <= now:
            return None
        if entry.attempt.digest != digest:
            raise GatewayError(
                ErrorCode.MALFORMED, "Idempotency-Key was already used for a different message"
            )
        return entry.attempt

    def record(self, uid: int, key: str, attempt: Attempt, now: float) -> None:
        self._drop((uid, key))
        size = ENTRY_OVERHEAD + len(key)
        self._entries[(uid, key)] = _Entry(now + self._ttl, attempt, size)
        if uid not in self._per_user:
            self._per_user[uid] = OrderedDict()
            self.bytes += USER_OVERHEAD
        self._per_user[uid][key] = None
        self.bytes += size
        mine = self._per_user[uid]
        while len(mine) > self._per_user_max:
            self._drop((uid, next(iter(mine))))
        self._evict(now)

    def _evict(self, now: float) -> None:
        while self._entries:
            oldest, entry = next(iter(self._entries.items()))
            full = len(self._entries) > self._max_entries or self.bytes > self._max_bytes
            if entry.expires > now:
                if not full:
                    break
                self.evicted_early += 1
            self._drop(oldest)

    def _drop(self, slot: tuple[int, str]) -> None:
        entry = self._entries.pop(slot, None)
        if entry is None:
            return
        self.bytes -= entry.size
        uid, key = slot
        mine = self._per_user[uid]
        del mine[key]
        if not mine:
            del self._per_user[uid]
            self.bytes -= USER_OVERHEAD

    def keys_of(self, uid: int) -> int:
        return len(self._per_user.get(uid, ()))

    def __len__(self) -> int:
        return len(self._entries)
