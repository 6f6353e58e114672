"""Sign-in throttling per username, so guessing one password never locks out others."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.domain.ttl_cache import TtlCache


@dataclass(frozen=True)
class _Failures:
    count: int
    first_at: float
    locked_until: float


class SignInThrottle:
    """After `max_failures` failures within `window` seconds a username is refused for
    `lockout` seconds. State is per gateway process and bounded in size."""

    def __init__(
        self, max_failures: int, window: float, lockout: float, max_entries: int = 100_000
    ) -> None:
        self._max = max_failures
        self._window = window
        self._lockout = lockout
        self._state: TtlCache[str, _Failures] = TtlCache(max(window, lockout), max_entries)

    @staticmethod
    def _key(username: str) -> str:
        return username.casefold()

    def retry_after(self, username: str, now: float) -> int | None:
        """Seconds until this username may try again, or None if it may try now."""
        state = self._state.get(self._key(username), now)
        if state is None or state.locked_until <= now:
            return None
        return max(1, math.ceil(state.locked_until - now))

    def failed(self, username: str, now: float) -> None:
        key = self._key(username)
        state = self._state.get(key, now)
        if state is not None and state.locked_until > now:
            return
        if state is None or state.locked_until or now - state.first_at > self._window:
            state = _Failures(0, now, 0.0)
        count = state.count + 1
        locked_until = now + self._lockout if count >= self._max else 0.0
        self._state.put(key, _Failures(count, state.first_at, locked_until), now)

    def succeeded(self, username: str) -> None:
        self._state.discard(self._key(username))
