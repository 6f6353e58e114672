"""Failed sign-ins: counted per account, per client address and over the whole process.

Each limit answers how long a sign-in must wait. The account limit stops guessing one
password; the address limit makes locking accounts out cost an attacker his address;
the global budget caps guessing spread over many addresses and accounts.

One account key stands for several names ("alice" and "álice" share one): failures are
counted per name under it, all of them toward its lockout, and a right password clears
only those of the name that signed in, so no other account's owner can clear them.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from gateway.domain.ttl_cache import TtlCache

#: Seconds a refusal asks to wait when only attempts still being checked fill a limit:
#: they end within a password check (~0.1 s), failed or not.
PENDING_WAIT = 1


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))


@dataclass
class _Failures:
    #: Failures within the window, per name recorded under the key; all of them count.
    by_name: dict[str, int]
    first_at: float
    locked_until: float

    @property
    def count(self) -> int:
        return sum(self.by_name.values())


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

    def retry_after(self, key: str, now: float, pending: int = 0) -> int | None:
        """Seconds until `key` may try again, or None if it may try now. `pending`
        attempts of the key are being checked: each may still fail, so they count."""
        state = self._state.get(key, now)
        if state is not None and state.locked_until > now:
            return _seconds(state.locked_until - now)
        if self._max == 0 or not pending:
            return None
        counted = 0
        if state is not None and not state.locked_until and now - state.first_at <= self._window:
            counted = state.count
        return PENDING_WAIT if counted + pending >= self._max else None

    def failed(self, key: str, now: float, name: str | None = None) -> None:
        """Count a failure of `name` (the key itself unless given) against `key`."""
        if self._max == 0:
            return
        state = self._state.get(key, now)
        if state is not None and state.locked_until > now:
            return
        if state is None or state.locked_until or now - state.first_at > self._window:
            state = _Failures({}, now, 0.0)
        who = key if name is None else name
        failures = _Failures(
            {**state.by_name, who: state.by_name.get(who, 0) + 1}, state.first_at, 0.0
        )
        if failures.count >= self._max:
            failures.locked_until = now + self._lockout
        self._state.put(key, failures, now)

    def forget(self, key: str, name: str | None = None) -> None:
        """Drop the failures of `name` (the key itself unless given) under `key`; those
        of other names still count, and a lockout already running stays."""
        # Read whether or not its time is up: clearing a record that has expired changes
        # nothing, since `failed` and `retry_after` judge it by its own times.
        state = self._state.get(key, -math.inf)
        if state is None:
            return
        state.by_name.pop(key if name is None else name, None)
        if not state.by_name and not state.locked_until:
            self._state.discard(key)


class FailureBudget:
    """At most `budget` failures within any `window` seconds; once spent, every attempt
    waits until the oldest failure leaves the window. `budget` 0 turns it off."""

    def __init__(self, budget: int, window: float) -> None:
        self._window = window
        self._times: deque[float] = deque(maxlen=budget or None)
        self._off = budget == 0

    def retry_after(self, now: float, pending: int = 0) -> int | None:
        """Seconds until an attempt may be made, or None; `pending` ones may still fail."""
        if self._off:
            return None
        budget = self._times.maxlen or 0
        if len(self._times) >= budget:
            wait = self._times[0] + self._window - now
            if wait > 0:
                return _seconds(wait)
        if not pending:
            return None
        recent = sum(1 for t in self._times if now - t < self._window)
        return PENDING_WAIT if recent + pending >= budget else None

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
        #: Attempts admitted and not yet decided, per address and in all: counted as
        #: failures by `refusal`, or a burst sent at once would all pass the limits
        #: before the first failure is recorded (500 at once got past a budget of 50).
        self._pending_by_address: dict[str, int] = {}
        self._pending = 0

    def refusal(self, account: str, address: str, now: float) -> Refusal | None:
        """The longest wait any limit imposes on this attempt, or None. Attempts on one
        account are checked one at a time by the caller, so its own pending are none."""
        waits = [
            Refusal(scope, wait)
            for scope, wait in (
                ("account", self._account.retry_after(account, now)),
                (
                    "address",
                    self._address.retry_after(
                        address, now, self._pending_by_address.get(address, 0)
                    ),
                ),
                ("global", self._overall.retry_after(now, self._pending)),
            )
            if wait is not None
        ]
        return max(waits, key=lambda r: r.retry_after, default=None)

    @contextlib.contextmanager
    def attempt(self, address: str) -> Iterator[None]:
        """An admitted attempt being checked: it counts until it ends (record a failure
        with `failed` inside, so it never stops counting in between)."""
        self._pending += 1
        self._pending_by_address[address] = self._pending_by_address.get(address, 0) + 1
        try:
            yield
        finally:
            self._pending -= 1
            left = self._pending_by_address[address] - 1
            if left:
                self._pending_by_address[address] = left
            else:
                del self._pending_by_address[address]

    def failed(self, account: str, address: str, now: float, name: str | None = None) -> None:
        """A wrong password for `name` (the account key itself unless given)."""
        self._account.failed(account, now, name)
        self._address.failed(address, now)
        self._overall.failed(now)

    def succeeded(self, account: str, name: str | None = None) -> None:
        """A right password for `name` clears the failures recorded for that name, never
        those of other names sharing the account key (a sibling account's owner would
        clear the lockout of the account he is guessing at) nor the address's."""
        self._account.forget(account, name)
