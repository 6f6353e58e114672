"""Idempotency-Key bookkeeping for message posts, per gateway process."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.api import Message
from contracts.errors import ErrorCode
from gateway.domain.ttl_cache import TtlCache
from gateway.errors import GatewayError


@dataclass(frozen=True)
class Attempt:
    """The message a key stands for, and whether Kafka has acknowledged it."""

    message: Message
    acked: bool


class IdempotencyCache:
    """Remembers, per (user, key), the message id given out and whether it was delivered.

    A failed or timed-out send keeps the same id, so a retry re-produces the same
    record (the worker stores it once); an acknowledged one is answered from here.
    """

    def __init__(self, ttl: float, max_entries: int) -> None:
        self._entries: TtlCache[tuple[int, str], Attempt] = TtlCache(ttl, max_entries)

    def lookup(self, uid: int, key: str, cid: str, text: str, now: float) -> Attempt | None:
        """The earlier attempt for this key, or None; 4000 if the key was used for another body."""
        attempt = self._entries.get((uid, key), now)
        if attempt is None:
            return None
        if attempt.message.cid != cid or attempt.message.text != text:
            raise GatewayError(
                ErrorCode.MALFORMED, "Idempotency-Key was already used for a different message"
            )
        return attempt

    def record(self, uid: int, key: str, attempt: Attempt, now: float) -> None:
        self._entries.put((uid, key), attempt, now)
