"""Failed sign-ins: counted per account, per client address and over the whole process.

Each limit answers how long a sign-in must wait. The account limit stops guessing one
password; the address limit makes locking accounts out cost an attacker his address;
the global budget caps guessing spread over many addresses and accounts.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from gateway.domain.ttl_cache import TtlCache


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


@dataclass(frozen=True)
class _Failures:
    count: int
    first_at: float
    locked_until: float


class FailureLimit:
    """After `max_failures` failures of one key within `window` seconds that key is refused
    for `lockout` seconds. Bounded in size; `max_failures` 0 turns the limit off."""

    def __init__(
        self, max_failures: int, window: float, lockout: float, max_entries: int = 100_000
    ) -> None:
        self._max = max_failures
        self._window = window
        self._lockout = lockout
        self._state: TtlCache[str, _Failures] = TtlCache(max(window, lockout), max_entries)

    def retry_after(self, key: str, now: float) -> int | None:
        """Seconds until `key` may try again, or None if it may try now."""
        state = self._state.get(key, now)
        if state is None or state.locked_until <= now:
            return None
        return _seconds(state.locked_until - now)

    def failed(self, key: str, now: float) -> None:
        if self._max == 0:
            return
        state = self._state.get(key, now)
        if state is not None and state.locked_until > now:
            return
        if state is None or state.locked_until or now - state.first_at > self._window:
            state = _Failures(0, now, 0.0)
        count = state.count + 1
        locked_until = now + self._lockout if count >= self._max else 0.0
        self._state.put(key, _Failures(count, state.first_at, locked_until), now)

    def forget(self, key: str) -> None:
        self._state.discard(key)


class FailureBudget:
    """At most `budget` failures within any `window` seconds; once spent, every attempt
    waits until the oldest failure leaves the window. `budget` 0 turns it off."""

    def __init__(self, budget: int, window: float) -> None:
        self._window = window
        self._times: deque[float] = deque(maxlen=budget or None)
        self._off = budget == 0

    def retry_after(self, now: float) -> int | None:
        if self._off or len(self._times) < (self._times.maxlen or 0):
            return None
        wait = self._times[0] + self._window - now
        return _seconds(wait) if wait > 0 else None

    def failed(self, now: float) -> None:
        if not self._off:
            self._times.append(now)


@dataclass(frozen=True)
class Refusal:
    """Why a sign-in may not be tried now, and for how long."""

    scope: str  # "account", "address" or "global"
    retry_after: int


class SignInThrottle:
    """The three limits on failed sign-ins, consulted before a password is checked."""

    def __init__(
        self, account: FailureLimit, address: FailureLimit, overall: FailureBudget
    ) -> None:
        self._account = account
        self._address = address
        self._overall = overall

    def refusal(self, account: str, address: str, now: float) -> Refusal | None:
        """The longest wait any limit imposes on this attempt, or None."""
        waits = [
            Refusal(scope, wait)
            for scope, wait in (
                ("account", self._account.retry_after(account, now)),
                ("address", self._address.retry_after(address, now)),
                ("global", self._overall.retry_after(now)),
            )
            if wait is not None
        ]
        return max(waits, key=lambda r: r.retry_after, default=None)

    def failed(self, account: str, address: str, now: float) -> None:
        self._account.failed(account, now)
        self._address.failed(address, now)
        self._overall.failed(now)

    def succeeded(self, account: str) -> None:
        """A right password clears the account's failures (never the address's)."""
        self._account.forget(account)
