"""What the watch serves, and when it stops trusting Consul's answer, without I/O.

Consul being unreachable never empties the set: the last known set keeps
serving and is marked stale. Right after Consul comes back (or its index went
backwards, as after an agent restart), an answer is not believed to have lost
instances for a grace period: a restarted dev or client agent has forgotten every
service until each worker's next heartbeat registers it again, so its first answers
list the workers one by one. Until the grace ends, or the answer lists every instance
served before, the ones it lacks keep serving beside the ones it names (marked
stale): believing the first answer sent every read to the first worker back for up
to a heartbeat. An instance that really left in the meantime costs the balancer an
ejection and a retry, no more: it is kept for one grace at most, however often
Consul fails or restarts within it.
"""

from __future__ import annotations

from collections.abc import Callable

from discovery.models import Instance


class Membership:
    """The set a watch serves, whether it is fresh, and since when it is not."""

    def __init__(self, *, restart_grace: float, clock: Callable[[], float]) -> None:
        self.restart_grace = restart_grace
        self._clock = clock
        self._instances: tuple[Instance, ...] = ()
        self._stale_since: float | None = None
        self._ready = False
        self._doubt_pending = False
        self._doubt_until: float | None = None
        #: The set served when the doubt began: what an answer in doubt may lack.
        self._before: tuple[Instance, ...] = ()

    @property
    def instances(self) -> tuple[Instance, ...]:
        return self._instances

    @property
    def stale_since(self) -> float | None:
        """When the set stopped being confirmed by Consul; None while it is."""
        return self._stale_since

    @property
    def ready(self) -> bool:
        """Whether Consul answered at least once."""
        return self._ready

    def unreachable(self) -> None:
        """A query failed: keep serving the last set, marked stale."""
        if self._stale_since is None:
            self._stale_since = self._clock()
        self._doubt_pending = True

    def restarted(self) -> None:
        """Consul's index went backwards: its state may have been lost."""
        self._doubt_pending = True

    def doubt_left(self) -> float | None:
        """Seconds an answer's losses are still doubted; None when answers are trusted."""
        if self._doubt_until is None:
            return None
        left = self._doubt_until - self._clock()
        return left if left > 0 else None

    def observed(self, instances: tuple[Instance, ...]) -> bool:
        """Consul answered with `instances`; returns True when the served set changed."""
        now = self._clock()
        self._ready = True
        if self._doubt_pending:
            self._doubt_pending = False
            # One grace per doubt: a failure or restart while answers are doubted (or after
            # a grace that no answer has ended yet) starts none of its own, or an instance
            # that left would be kept for as long as Consul fails now and then. Outside a
            # doubt, the set served is the last one an answer was believed for.
            if self._doubt_until is None:
                self._doubt_until = now + self.restart_grace
                self._before = self._instances
        named = {i.id for i in instances}
        lacking = [i for i in self._before if i.id not in named]
        if lacking and self.doubt_left() is not None:
            if self._stale_since is None:
                self._stale_since = now
            return self._serve(tuple(sorted((*instances, *lacking), key=lambda i: i.id)))
        self._doubt_until = None
        self._before = ()
        self._stale_since = None
        return self._serve(instances)

    def _serve(self, instances: tuple[Instance, ...]) -> bool:
        if instances == self._instances:
            return False
        self._instances = instances
        return True
