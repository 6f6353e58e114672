"""The gateway side: follow the serving instances of a service with a blocking query."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import consul.aio

from discovery.consul_api import (
    CONSUL_ERRORS,
    UnreadableAnswer,
    brief,
    health_entries,
    instances_from_health,
    open_consul,
)
from discovery.durations import to_go, to_seconds
from discovery.errors import WatchNotReady
from discovery.index import Pacer, next_index
from discovery.membership import Membership
from discovery.models import Instance
from platform_common.retry import Backoff

log = logging.getLogger(__name__)

Subscriber = Callable[[tuple[Instance, ...]], None]

#: Consul adds up to wait/16 of jitter to a blocking query; this much more is network slack.
_QUERY_SLACK = 5.0
#: Distinct ignored instances logged at most (the log line is once per instance id).
_REFUSED_LOGGED = 1000
#: Check states that leave an instance serving: `warning` is a worker with a stuck
#: partition, whose reads are fine. Anything else (`critical`, which maintenance mode and
#: a failed node are too) takes it out.
_SERVING = frozenset({"passing", "warning"})


def serving(nodes: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The entries of a /v1/health/service answer whose every check (the service's own,
    its maintenance mode, the node's serfHealth and maintenance) is passing or warning;
    an entry without a readable list of checks (each an object with a string Status) is
    left out, with a warning: Consul writes none such, so its health is unknown."""
    kept = []
    for node in nodes:
        statuses = _statuses(node)
        if statuses is None:
            log.warning("leaving out a health entry whose checks do not read: %s", brief(node))
        elif statuses <= _SERVING:
            kept.append(node)
    return kept


def _statuses(node: object) -> set[str] | None:
    """The statuses of an entry's checks; None when they do not read."""
    checks = node.get("Checks") if isinstance(node, Mapping) else None
    if not isinstance(checks, list):
        return None
    statuses = set()
    for check in checks:
        status = check.get("Status") if isinstance(check, Mapping) else None
        if not isinstance(status, str):
            return None
        statuses.add(status)
    return statuses


class ServiceWatch:
    """The current serving instances of `service`, kept fresh by a blocking-query loop.

    Serving: no check of the instance or its node is critical (`passing` and `warning`
    serve). Consul's `?passing` filter would drop `warning` too, so the query asks for
    every instance and the watch filters.

    `wait` is how long one query may block in Consul. When Consul is unreachable
    the last known set keeps serving (see `stale_since`) and the loop retries
    with backoff; it never empties the set because Consul is down. `token` is the
    ACL token of the queries. With `require_tag` / `require_meta`, an instance whose
    registration lacks that tag or those meta keys (or, where `require_meta` names a
    value, has another value) is never served (and logged once): whatever registers
    under the service name does not get the callers' credentials.
    """

    def __init__(
        self,
        consul_url: str,
        service: str = "dialogue",
        *,
        wait: str = "30s",
        min_interval: float = 0.05,
        restart_grace: float = 15.0,
        backoff: Backoff | None = None,
        token: str | None = None,
        require_tag: str | None = None,
        require_meta: Mapping[str, str | None] | None = None,
    ) -> None:
        self.consul_url = consul_url
        self.service = service
        self._token = token
        self._require_tag = require_tag
        self._require_meta = dict(require_meta or {})
        self._refused: set[str] = set()
        self._wait = to_seconds(wait)
        self._pacer = Pacer(min_interval, time.monotonic)
        self._backoff = backoff or Backoff(initial=0.1, maximum=5.0)
        self._membership = Membership(restart_grace=restart_grace, clock=time.monotonic)
        self._subscribers: list[Subscriber] = []
        self._ready = asyncio.Event()
        self._consul: consul.aio.Consul | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def instances(self) -> tuple[Instance, ...]:
        return self._membership.instances

    @property
    def stale_since(self) -> float | None:
        """Monotonic time since which the set is not confirmed by Consul; None when fresh."""
        return self._membership.stale_since

    @property
    def ready(self) -> bool:
        return self._membership.ready

    def subscribe(self, callback: Subscriber) -> None:
        """Call `callback` with the current set now and with every new set after."""
        self._subscribers.append(callback)
        callback(self.instances)

    def unsubscribe(self, callback: Subscriber) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(callback)

    async def start(self) -> None:
        if self._task is not None:
            return
        self._consul = open_consul(self.consul_url, self._token)
        self._task = asyncio.create_task(self._run(self._consul), name=f"watch:{self.service}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client, self._consul = self._consul, None
        if client is not None:
            await client.close()

    async def wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109 - agreed API
        """Return once Consul answered the first query; raises WatchNotReady after `timeout`."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise WatchNotReady(
                f"no answer from Consul at {self.consul_url} about '{self.service}' "
                f"within {timeout:g}s"
            ) from None

    async def _run(self, client: consul.aio.Consul) -> None:
        """Query after query until cancelled; no failure ends the loop, as a watch that
        ended would leave the gateway serving a frozen set: crashed workers kept, new
        ones never seen. A failed query keeps the last set (stale), backs off, and the
        next one does not block (after an outage, Consul may have restarted)."""
        index = 0
        while True:
            await asyncio.sleep(self._pacer.delay())
            self._pacer.started()
            try:
                index = await self._query(client, index)
                continue
            except UnreadableAnswer as exc:
                pause = self._failed("consul's answer about '%s' does not read (%s)", exc)
            except CONSUL_ERRORS as exc:
                pause = self._failed(
                    "consul unreachable for '%s' (%s: %s)", type(exc).__name__, exc
                )
            except Exception as exc:  # any other is a bug, yet it must not end the watch
                pause = self._failed("watch of '%s' failed unexpectedly", exc_info=exc)
            index = 0
            await asyncio.sleep(pause)

    async def _query(self, client: consul.aio.Consul, index: int) -> int:
        """One blocking query after `index`, its answer served; returns the next index."""
        wait = self._wait
        doubt = self._membership.doubt_left()
        if doubt is not None:
            wait = min(wait, doubt)
        async with asyncio.timeout(wait * 17 / 16 + _QUERY_SLACK):
            raw_index, answer = await client.health.service(
                self.service, index=index or None, wait=to_go(wait)
            )
        returned = int(raw_index)
        nodes = health_entries(answer)
        index = next_index(index, returned)
        if index == 0:
            log.info("consul index went backwards for '%s'; starting over", self.service)
            self._membership.restarted()
        self._observed(self._eligible(instances_from_health(serving(nodes))))
        self._backoff.reset()
        return index

    def _eligible(self, instances: tuple[Instance, ...]) -> tuple[Instance, ...]:
        """The instances registered with the required tag and meta keys."""
        kept = []
        for instance in instances:
            missing = [
                key if expected is None else f"{key}={expected!r}"
                for key, expected in self._require_meta.items()
                if not instance.meta.get(key) or expected not in (None, instance.meta[key])
            ]
            if self._require_tag is not None and self._require_tag not in instance.tags:
                missing.insert(0, f"tag {self._require_tag!r}")
            if not missing:
                kept.append(instance)
            elif instance.id not in self._refused and len(self._refused) < _REFUSED_LOGGED:
                self._refused.add(instance.id)
                log.warning(
                    "ignoring instance '%s' of '%s': its registration lacks %s",
                    instance.id[:100],
                    self.service,
                    ", ".join(missing),
                )
        return tuple(kept)

    def _failed(self, why: str, *args: object, exc_info: BaseException | None = None) -> float:
        """Keep serving the last set, marked stale, and log `why` (its first %s is the
        service); returns how long to back off. With `exc_info`, an error with its
        traceback."""
        self._membership.unreachable()
        delay = self._backoff.next_delay()
        age = time.monotonic() - (self._membership.stale_since or time.monotonic())
        log.log(
            logging.WARNING if exc_info is None else logging.ERROR,
            why + "; serving last known set of %d instance(s), stale for %.1fs; retrying in %.2fs",
            self.service,
            *args,
            len(self.instances),
            age,
            delay,
            exc_info=exc_info,
        )
        return delay

    def _observed(self, instances: tuple[Instance, ...]) -> None:
        was_stale = self.stale_since
        changed = self._membership.observed(instances)
        self._ready.set()
        if was_stale is not None and self.stale_since is None:
            log.info(
                "consul answers again for '%s' after %.1fs",
                self.service,
                time.monotonic() - was_stale,
            )
        elif self.stale_since is not None:
            named = {i.id for i in instances}
            log.warning(
                "consul lists %d instance(s) of '%s' right after coming back; keeping %s "
                "for up to %.0fs while they re-register",
                len(instances),
                self.service,
                ", ".join(i.id for i in self.instances if i.id not in named),
                self._membership.doubt_left() or 0.0,
            )
        if not changed:
            return
        log.info(
            "instances of '%s' now: %s",
            self.service,
            ", ".join(i.id for i in self.instances) or "none",
        )
        for callback in list(self._subscribers):
            try:
                callback(self.instances)
            except Exception:  # one faulty subscriber must not stop the others or the watch
                log.exception("subscriber %r of '%s' failed", callback, self.service)
