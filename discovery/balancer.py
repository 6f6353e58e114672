"""Round robin with passive health (ejection and cool-down), and the retry budget,
without I/O.

An instance that fails a request (connection error, timeout, 5xx) is ejected
for a cool-down that doubles with each ejection in a row (up to a ceiling). A fault
(`faulted`: the instance answered, but its handler failed on that request) ejects it
only once it has answered that way a number of times in a row, with no request served
between: one request that makes every handler fail must not empty the set.
When the cool-down is over it is due for a readmission probe; it only takes
requests again once the probe passed (or a request to it succeeded). When every
instance of the set is ejected the balancer does not refuse: it hands out the
one whose cool-down ends first (a crashed set then fails fast, a set that was
ejected by a short blip recovers on the next request).

The retry budget (`RetryBudget`) bounds the tries a client adds to its first ones, so
that a set failing under load is not sent up to `attempts` times its traffic.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from discovery.models import Instance, InstanceStats


@dataclass
class _Slot:
    instance: Instance
    requests: int = 0
    failures: int = 0
    ejections: int = 0
    strikes: int = 0  # ejections since the last successful request
    faults: int = 0  # faults since the last served request or ejection
    ejected_until: float | None = None  # None while in rotation
    probing: bool = False


class Balancer:
    """The current healthy set, whose turn is next, and which instances sit out."""

    def __init__(
        self,
        *,
        cooldown: float = 5.0,
        max_cooldown: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < cooldown <= max_cooldown:
            raise ValueError("need 0 < cooldown <= max_cooldown")
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._order: list[str] = []
        self._cursor = 0

    @property
    def instances(self) -> tuple[Instance, ...]:
        return tuple(self._slots[i].instance for i in self._order)

    def update(self, instances: Iterable[Instance]) -> None:
        """Replace the set; an instance that stays (same id and URL) keeps its counters."""
        slots: dict[str, _Slot] = {}
        for instance in sorted(instances, key=lambda i: i.id):
            old = self._slots.get(instance.id)
            if old is not None and old.instance.base_url == instance.base_url:
                old.instance = instance
                slots[instance.id] = old
            else:
                slots[instance.id] = _Slot(instance)
        self._slots = slots
        self._order = list(slots)
        self._cursor %= max(1, len(self._order))

    def pick(self, exclude: Collection[str] = ()) -> Instance | None:
        """The next instance in rotation not in `exclude`; None when there is none at all."""
        n = len(self._order)
        for k in range(n):
            i = (self._cursor + k) % n
            slot = self._slots[self._order[i]]
            if slot.ejected_until is None and slot.instance.id not in exclude:
                self._cursor = (i + 1) % n
                slot.requests += 1
                return slot.instance
        ejected = [s for s in self._slots.values() if s.instance.id not in exclude]
        if not ejected:
            return None
        slot = min(ejected, key=lambda s: s.ejected_until or 0.0)
        slot.requests += 1
        return slot.instance

    def ejections_of(self, instance_id: str) -> int:
        """How often the instance was ejected so far: note it when a request is sent."""
        slot = self._slots.get(instance_id)
        return 0 if slot is None else slot.ejections

    def succeeded(
        self,
        instance_id: str,
        ejections: int | None = None,
        *,
        served: bool = True,
        at: str | None = None,
    ) -> None:
        """A request to the instance got an answer (< 500): it is healthy. `ejections`
        is `ejections_of` when the request was sent: an answer to a request sent before
        the latest ejection says nothing of the instance since, and leaves it ejected
        (it used to end the cool-down at once: a worker failing half its requests
        stayed in rotation). `served=False`: the answer only says the instance is
        healthy (a health check, as the readmission probe is): it is readmitted but its
        doubling is kept, since only a served request shows it serves again. `at`: the
        URL the request went to (see `_slot_of`)."""
        slot = self._slot_of(instance_id, at)
        if slot is None:
            return
        stale = ejections is not None and ejections != slot.ejections
        if stale and slot.ejected_until is not None:
            return
        if served:
            slot.strikes = 0
            slot.faults = 0
        slot.ejected_until = None
        slot.probing = False

    def failed(self, instance_id: str, *, at: str | None = None) -> bool:
        """A request to the instance (at URL `at`) failed; returns True when that ejected it."""
        slot = self._slot_of(instance_id, at)
        if slot is None:
            return False
        slot.failures += 1
        return self._eject(slot)

    def faulted(self, instance_id: str, *, in_a_row: int, at: str | None = None) -> bool:
        """A request to the instance (at URL `at`) was answered with a fault: the
        instance's handler failed on that request (a bug it hit), which says more of the
        request than of the instance. It counts as a failure, and ejects the instance
        only when it is the `in_a_row`-th fault with no request served between (an
        instance whose every handler fails). Returns True when that ejected it."""
        slot = self._slot_of(instance_id, at)
        if slot is None:
            return False
        slot.failures += 1
        slot.faults += 1
        if slot.faults < in_a_row:
            return False
        return self._eject(slot)

    def due_for_probe(self) -> list[Instance]:
        """Ejected instances whose cool-down is over; each is handed out once per cool-down."""
        now = self._clock()
        due = []
        for slot in self._slots.values():
            if slot.ejected_until is not None and now >= slot.ejected_until and not slot.probing:
                slot.probing = True
                due.append(slot.instance)
        return due

    def probe_passed(self, instance_id: str, *, at: str | None = None) -> None:
        slot = self._slot_of(instance_id, at)
        if slot is not None and slot.probing:
            slot.ejected_until = None
            slot.probing = False

    def probe_failed(self, instance_id: str, *, at: str | None = None) -> None:
        slot = self._slot_of(instance_id, at)
        if slot is not None and slot.probing:
            self._eject(slot)

    def cooldown_for(self, strikes: int) -> float:
        """How long the `strikes`-th ejection in a row lasts."""
        return min(self.max_cooldown, self.cooldown * 2.0 ** min(strikes - 1, 60))

    def stats(self) -> list[InstanceStats]:
        return [
            InstanceStats(
                id=slot.instance.id,
                url=slot.instance.base_url,
                requests=slot.requests,
                failures=slot.failures,
                ejections=slot.ejections,
                ejected_until=slot.ejected_until,
                healthy=slot.ejected_until is None,
            )
            for slot in (self._slots[i] for i in self._order)
        ]

    def _slot_of(self, instance_id: str, at: str | None) -> _Slot | None:
        """The instance's slot, for the outcome of a request or probe sent to URL `at`;
        None when it is gone, or when the id now names another URL (registered again
        elsewhere): an outcome of the old address says nothing of the new one (a late
        timeout from it ejected the new one, found in review, 2026-12-07)."""
        slot = self._slots.get(instance_id)
        if slot is None or (at is not None and slot.instance.base_url != at):
            return None
        return slot

    def _eject(self, slot: _Slot) -> bool:
        now = self._clock()
        if slot.ejected_until is not None and now < slot.ejected_until:
            return False  # already sitting out (a concurrent request failed first)
        slot.strikes += 1
        slot.ejections += 1
        slot.faults = 0
        slot.ejected_until = now + self.cooldown_for(slot.strikes)
        slot.probing = False
        return True


@dataclass
class _Second:
    at: int  # the whole second of the clock it counts
    first_tries: int = 0
    retries: int = 0


class RetryBudget:
    """How many retries (tries after a request's first) a client may send: a share of
    the first tries it sent lately, plus a floor that does not depend on traffic.

    Over the last `window` seconds (whole seconds of the clock), a retry is allowed
    while the retries sent stay within `ratio` of the first tries sent, plus
    `per_second` retries for each second of the window. The share keeps a set that
    fails under load from getting up to `attempts` times its traffic when it is
    weakest; the floor lets a quiet client, whose few first tries earn no whole retry,
    still retry its failures.
    """

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        per_second: float = 10.0,
        window: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ratio < 0 or per_second < 0 or window < 1:
            raise ValueError("need ratio >= 0, per_second >= 0 and window >= 1")
        self.ratio = ratio
        self.per_second = per_second
        self.window = window
        self._clock = clock
        self._seconds: deque[_Second] = deque()

    def allows_retry(self) -> bool:
        """Whether one more retry stays within the budget (`sent` counts it once sent)."""
        self._current()
        first_tries = sum(s.first_tries for s in self._seconds)
        retries = sum(s.retries for s in self._seconds)
        return retries + 1 <= self.ratio * first_tries + self.per_second * self.window

    def sent(self, *, retry: bool) -> None:
        """Count a try on its way: a request's first, or a retry."""
        second = self._current()
        if retry:
            second.retries += 1
        else:
            second.first_tries += 1

    def _current(self) -> _Second:
        """This second's counts, after forgetting the seconds that left the window."""
        now = math.floor(self._clock())
        while self._seconds and self._seconds[0].at <= now - self.window:
            self._seconds.popleft()
        if not self._seconds or self._seconds[-1].at != now:
            self._seconds.append(_Second(now))
        return self._seconds[-1]
