"""The gateway side: HTTP requests to one healthy instance, retried on the next one."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from discovery.balancer import Balancer, RetryBudget
from discovery.errors import NoInstanceAvailable, OutcomeUnknown
from discovery.models import Instance, InstanceStats, UpstreamResponse
from discovery.watch import ServiceWatch
from platform_common.http import TIMEOUT_MS_MAX

log = logging.getLogger(__name__)
#: The largest answer read from an instance. The gateway's largest real ones: a chat
#: list page of 200 chats of MAX_CHAT_MEMBERS (at most 10,000) members with 19-digit ids,
#: ~40 MB; a history page of 200 texts of 4,096 characters escaped as \\uXXXX, ~4.9 MB.
#: Past this the instance is broken, or not one of ours (found in review: a 500 MB
#: answer from a registered instance was read whole; 16 MiB, the first bound, was below
#: the largest chat list, which would have ejected every worker in turn).
ANSWER_MAX_BYTES = 64 * 1024 * 1024


class AnswerTooLarge(aiohttp.ClientPayloadError):
    """An instance's answer is longer than ANSWER_MAX_BYTES: a failed try of it."""


async def read_bounded(resp: aiohttp.ClientResponse, limit: int = ANSWER_MAX_BYTES) -> bytes:
    """The whole body, unless it is longer than `limit` (AnswerTooLarge; read no further)."""
    if resp.content_length is not None and resp.content_length > limit:
        raise AnswerTooLarge(f"an answer of {resp.content_length} bytes (at most {limit})")
    chunks, size = [], 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(f"an answer of more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


#: Seconds a pooled connection to a worker may stay idle before this side closes it.
#: A worker closes one idle longer than its HEAD_WITHIN (30 s), which must be more, or a
#: request could go out on a connection the worker is closing at that moment.
POOL_IDLE = 15.0


class BalancedClient:
    """Round robin over the watch's instances with passive health checks and retries.

    A connection error, timeout or 5xx ejects the instance for a cool-down and
    an idempotent request moves on to the next instance, within `attempts` and
    `deadline` seconds. A non-idempotent request moves on only when the
    connection could not be made (it never reached the instance). 4xx answers
    are returned as they are, except the statuses in `refused` (an instance that
    refuses the client itself, e.g. 401 for a credential it does not share): those
    count as the instance's failure, like a 5xx, and the last one is returned when
    no instance answers otherwise; so does an answer below 500 that `refuses` accepts
    (one whose body says the instance refuses the client, e.g. a route it lacks, being
    of another version). A 5xx that `passed_on` accepts is the instance's
    answer about something beyond it that the others share (the gateway's workers: the
    message bus is down): returned as it is, neither ejecting the instance nor moving
    on. A 5xx that `faulted` accepts says the instance's handler failed on this request
    (the gateway's workers: 5000, a bug): an idempotent request moves on, as after any
    failure, and the last such answer is returned when no instance answers otherwise; a
    non-idempotent one raises OutcomeUnknown. It ejects the instance only at the
    `faults_to_eject`-th such answer in a row with nothing served between (one request
    that hits a bug in every instance would otherwise eject them all). With
    `timeout_header`, each try tells the instance in that header how long it waits
    for the answer (whole milliseconds, at least 1), so the instance can give up when
    the caller does. An ejected instance is readmitted once a GET of
    `probe_path` answers below 500 and not in `refused`, with a body `probe_healthy`
    accepts when given (None: readmit when the cool-down ends).

    Retries (tries after a request's first) are held to a budget: within the last
    `retry_window` seconds, `retry_ratio` of the first tries plus
    `min_retries_per_second` for each of those seconds. A request whose retry the
    budget refuses ends as one whose attempts ran out.

    Connections are not pooled with a limit: waiting for a free connection would
    count against `request_timeout` and eject a healthy instance (callers bound
    the requests in flight).
    """

    def __init__(
        self,
        watch: ServiceWatch,
        *,
        attempts: int = 3,
        deadline: float = 5.0,
        request_timeout: float = 2.0,
        connect_timeout: float | None = None,
        cooldown: float = 5.0,
        headers: Mapping[str, str] | None = None,
        max_cooldown: float = 60.0,
        probe_path: str | None = "/ping",
        refused: frozenset[int] = frozenset(),
        refuses: Callable[[int, bytes], bool] | None = None,
        probe_healthy: Callable[[bytes], bool] | None = None,
        passed_on: Callable[[int, bytes], bool] | None = None,
        faulted: Callable[[int, bytes], bool] | None = None,
        faults_to_eject: int = 5,
        timeout_header: str | None = None,
        retry_ratio: float = 0.2,
        min_retries_per_second: float = 10.0,
        retry_window: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        if faults_to_eject < 1:
            raise ValueError("faults_to_eject must be at least 1")
        self.watch = watch
        self.attempts = attempts
        self.deadline = deadline
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.probe_path = probe_path
        self.refused = refused
        self.refuses = refuses
        self.probe_healthy = probe_healthy
        self.passed_on = passed_on
        self.faulted = faulted
        self.faults_to_eject = faults_to_eject
        self.timeout_header = timeout_header
        self._headers = dict(headers or {})
        self._balancer = Balancer(cooldown=cooldown, max_cooldown=max_cooldown, clock=clock)
        self._budget = RetryBudget(
            ratio=retry_ratio, per_second=min_retries_per_second, window=retry_window, clock=clock
        )
        self._session: aiohttp.ClientSession | None = None
        self._probes: set[asyncio.Task[None]] = set()

    @property
    def instances(self) -> tuple[Instance, ...]:
        return self._balancer.instances

    def stats(self) -> list[InstanceStats]:
        """Per-instance counters of the current set, for admin and metrics endpoints."""
        return self._balancer.stats()

    async def start(self) -> None:
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(
            headers=self._headers,
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=POOL_IDLE),
            trace_configs=[_sent_tracing()],
        )
        # aiohttp sends GET, PUT and DELETE a second time, to the same instance, when a
        # kept-alive connection drops under them, whatever `idempotent` says: a request
        # made not to be sent twice was, and a retry went to the instance that failed
        # and past the retry budget (found in review). Retries are this client's own.
        self._session._retry_connection = False
        self.watch.subscribe(self._balancer.update)

    async def stop(self) -> None:
        self.watch.unsubscribe(self._balancer.update)
        probes, self._probes = list(self._probes), set()  # each removes itself when done
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        healthy: Callable[[bytes], bool] | None = None,
        readable: Callable[[bytes], bool] | None = None,
    ) -> UpstreamResponse:
        """Send the request to the next healthy instance; raises NoInstanceAvailable.

        `healthy` makes the request a health check, judged as the readmission probe is:
        an answer below 500 and not refused whose body it rejects is the instance's
        failure (the next instance is asked; the last such answer is returned when none
        answers otherwise), one it accepts readmits the instance without resetting its
        doubling cool-down (it says the instance is healthy, not that it served).

        `readable` (idempotent requests only) judges a success's body: one it rejects (not
        the answer's shape: a broken instance, or not one of ours) is the instance's
        failure, and the next instance is asked; the last such answer is returned when
        none answers otherwise. Counted a success, such an instance kept taking its share
        of requests and failing each one (found in review).
        """
        session = self._session
        if session is None:
            raise RuntimeError("BalancedClient.start() was not called")
        if (healthy is not None or readable is not None) and not idempotent:
            raise ValueError("healthy and readable judge idempotent requests only: they move on")
        self._probe_due(session)
        give_up_at = time.monotonic() + self.deadline
        tried: list[str] = []
        failures: list[str] = []
        rejected: UpstreamResponse | None = None  # the last answer that was a failure
        while len(tried) < self.attempts:
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                failures.append(f"deadline of {self.deadline:g}s reached")
                break
            instance = self._next_instance(tried, failures)
            if instance is None:
                break
            tried.append(instance.id)
            ejections = self._balancer.ejections_of(instance.id)
            total = min(self.request_timeout, remaining)
            # Earlier tries left this one less than its own timeout: the deadline's doing.
            cut_short = len(tried) > 1 and total < self.request_timeout
            connect = None if self.connect_timeout is None else min(self.connect_timeout, total)
            timeout = aiohttp.ClientTimeout(total=total, sock_connect=connect)
            attempt = {"sent": False}  # set once the request's head is on the connection
            sent_headers = dict(headers or {})
            if self.timeout_header is not None:
                # Whole ms, 1 .. TIMEOUT_MS_MAX (about 11.6 days: what a larger timeout
                # setting would send, the instance refuses).
                waits = min(TIMEOUT_MS_MAX, max(1, int(total * 1000)))
                sent_headers[self.timeout_header] = str(waits)
            try:
                async with session.request(
                    method,
                    instance.base_url + path,
                    params=params,
                    json=json,
                    headers=sent_headers,
                    timeout=timeout,
                    trace_request_ctx=attempt,
                ) as resp:
                    body = await read_bounded(resp)
                    status, resp_headers = resp.status, resp.headers
            except aiohttp.ClientConnectorError as exc:  # no connection: it never got there
                failures.append(self._failed(instance, f"cannot connect: {exc.os_error}"))
                continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                # Nothing was sent (a connect that never completed: a host that drops
                # packets): it never got there either, whatever the request.
                unsent = not attempt["sent"]
                what = f"no connection within {connect or total:g}s" if unsent else None
                excused = cut_short and isinstance(exc, TimeoutError)
                reason = self._blame(instance, what or _describe(exc, total), excused)
                if not idempotent and not unsent:
                    raise OutcomeUnknown(_unknown(method, path, reason)) from exc
                failures.append(reason)
                continue
            response = UpstreamResponse(
                status=status,
                body=body,
                headers=CIMultiDictProxy(CIMultiDict(resp_headers)),
                instance_id=instance.id,
            )
            if status >= 500 and not (self.passed_on and self.passed_on(status, body)):
                # A health check's 5xx says the instance is not healthy, whatever it is.
                fault = healthy is None and self.faulted is not None and self.faulted(status, body)
                what = f"HTTP {status}, its handler failed" if fault else f"HTTP {status}"
                reason = self._failed(instance, what, fault=fault)
                if not idempotent:
                    raise OutcomeUnknown(_unknown(method, path, reason))
                failures.append(reason)
                if fault:
                    rejected = response
                continue
            if status in self.refused or (
                self.refuses is not None and status < 500 and self.refuses(status, body)
            ):  # it answered, refusing us: nothing was applied
                failures.append(self._failed(instance, f"HTTP {status}"))
                rejected = response
                continue
            if readable is not None and status < 300 and not readable(body):
                failures.append(self._failed(instance, f"HTTP {status} with a body not understood"))
                rejected = response
                continue
            if healthy is not None and not healthy(body):
                failures.append(self._failed(instance, f"HTTP {status}, saying it is unhealthy"))
                rejected = response
                continue
            self._balancer.succeeded(
                instance.id, ejections, served=healthy is None, at=instance.base_url
            )
            return response
        if rejected is not None:
            return rejected
        raise NoInstanceAvailable(self._nobody(method, path, failures))

    def _next_instance(self, tried: list[str], failures: list[str]) -> Instance | None:
        """The instance of the next try; None when every instance was tried or the retry
        budget refuses the retry (said in `failures`)."""
        if not any(i.id not in tried for i in self._balancer.instances):
            return None
        if tried and not self._budget.allows_retry():
            failures.append("retry budget spent (retries held to a share of first tries)")
            return None
        instance = self._balancer.pick(exclude=tried)
        if instance is not None:
            self._budget.sent(retry=bool(tried))
        return instance

    def _blame(self, instance: Instance, reason: str, excused: bool) -> str:
        """A timeout of a try the deadline cut below `request_timeout` is the deadline's
        doing: it is reported, not held against the instance (no ejection)."""
        if excused:
            return f"{instance.id}: {reason} (in the time the deadline left)"
        return self._failed(instance, reason)

    def _failed(self, instance: Instance, reason: str, *, fault: bool = False) -> str:
        """Count the try's failure against the instance (a fault: see `Balancer.faulted`)
        and log it; returns the reason as `failures` lists it."""
        if fault:
            ejected = self._balancer.faulted(
                instance.id, in_a_row=self.faults_to_eject, at=instance.base_url
            )
        else:
            ejected = self._balancer.failed(instance.id, at=instance.base_url)
        log.warning(
            "request to instance '%s' failed: %s%s",
            instance.id,
            reason,
            "; ejected" if ejected else "",
        )
        return f"{instance.id}: {reason}"

    def _nobody(self, method: str, path: str, failures: list[str]) -> str:
        service = self.watch.service
        if not failures:
            state = "" if self.watch.ready else " (Consul not reached yet)"
            return f"{method} {path}: no instance of '{service}' is registered and passing{state}"
        return f"{method} {path}: no instance of '{service}' answered ({'; '.join(failures)})"

    def _probe_due(self, session: aiohttp.ClientSession) -> None:
        for instance in self._balancer.due_for_probe():
            if self.probe_path is None:
                self._balancer.probe_passed(instance.id, at=instance.base_url)
                continue
            task = asyncio.create_task(
                self._probe(session, instance, self.probe_path), name=f"probe:{instance.id}"
            )
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)

    async def _probe(self, session: aiohttp.ClientSession, instance: Instance, path: str) -> None:
        try:
            async with session.get(
                instance.base_url + path,
                timeout=aiohttp.ClientTimeout(total=self.request_timeout),
            ) as resp:
                body = await read_bounded(resp)
                healthy = resp.status < 500 and resp.status not in self.refused
                if healthy and self.probe_healthy is not None:
                    healthy = self.probe_healthy(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("instance '%s' still unhealthy: %s", instance.id, _describe(exc, None))
            healthy = False
        if healthy:
            log.info("instance '%s' answers again; back in rotation", instance.id)
            self._balancer.probe_passed(instance.id, at=instance.base_url)
        else:
            self._balancer.probe_failed(instance.id, at=instance.base_url)


def _sent_tracing() -> aiohttp.TraceConfig:
    """Marks a request's `trace_request_ctx` once its head is written: a failure before
    that means the instance never saw it (a POST may then go to the next one)."""
    tracing = aiohttp.TraceConfig()

    async def headers_sent(session: Any, context: Any, params: Any) -> None:
        if isinstance(context.trace_request_ctx, dict):
            context.trace_request_ctx["sent"] = True

    tracing.on_request_headers_sent.append(headers_sent)
    return tracing


def _describe(exc: BaseException, timeout: float | None) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s" if timeout else "timed out"
    return f"{type(exc).__name__}: {exc}"


def _unknown(method: str, path: str, reason: str) -> str:
    return (
        f"{method} {path} failed after it may have reached an instance ({reason}); "
        "not retried because the request is not idempotent"
    )
