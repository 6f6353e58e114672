"""The worker side: register in Consul, keep a TTL check fresh, deregister on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import consul
import consul.aio

from discovery.consul_api import CONSUL_ERRORS, open_consul
from discovery.durations import to_go, to_seconds
from discovery.errors import ConsulUnavailable, DuplicateInstance
from discovery.models import HealthReport, Registration

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[HealthReport]]

#: Consul keeps at most 4 KiB of check output; reasons are cut well below that.
_REASON_MAX = 1000
#: Seconds one TTL update may take: a third of the interval, but never under one
#: second (the first update is part of start(), and a loaded agent answers slowly).
_REPORT_MIN = 1.0
#: How much longer than one TTL a registration must stay passing to prove a live owner.
_OWNER_SLACK = 1.0


class Registrar:
    """Registers one instance with a TTL check and heartbeats it from `probe`.

    The heartbeat runs every `interval` (a third of `ttl` by default), so one
    late beat never lets the check lapse. The probe may take `probe_timeout` seconds
    (default and at least `interval`): one that raises or answers later counts as
    critical. While it runs past `interval` the check's last report is sent again
    every `interval`, so a probe allowed longer than the TTL does not let it lapse.
    When the agent answers that it does not know the check (it was restarted) the
    instance registers again.
    """

    def __init__(
        self,
        consul_url: str,
        registration: Registration,
        probe: Probe,
        *,
        ttl: float = 10.0,
        interval: float | None = None,
        probe_timeout: float | None = None,
        deregister_critical_after: str = "1m",
        token: str | None = None,
    ) -> None:
        interval = ttl / 3 if interval is None else interval
        if not 0 < interval < ttl:
            raise ValueError(f"need 0 < interval < ttl, got interval={interval} ttl={ttl}")
        if probe_timeout is not None and not probe_timeout > 0:
            raise ValueError(f"need probe_timeout > 0, got {probe_timeout}")
        to_seconds(deregister_critical_after)  # fail early on a malformed duration
        self.consul_url = consul_url
        self.registration = registration
        self.ttl = ttl
        self.interval = interval
        self.probe_timeout = max(interval, probe_timeout or 0.0)
        self.deregister_critical_after = deregister_critical_after
        self._probe = probe
        self._token = token
        self._consul: consul.aio.Consul | None = None
        self._task: asyncio.Task[None] | None = None
        self._registered = False
        self._last: HealthReport | None = None
        self._sent: HealthReport | None = None  # what Consul was told last
        self._sent_at: float | None = None  # when (the event loop's clock)

    @property
    def check_id(self) -> str:
        return f"service:{self.registration.instance_id}"

    @property
    def last_report(self) -> HealthReport | None:
        """What the last heartbeat reported; None before the first one."""
        return self._last

    async def check_free(self) -> None:
        """Consul answers and no live process holds this instance id (ConsulUnavailable,
        DuplicateInstance): what start() checks first, for a caller to ask before it takes
        work it would have to give back when registering fails."""
        client = self._client()
        try:
            await self._refuse_duplicate(client)
        except CONSUL_ERRORS as exc:
            raise self._unavailable(exc) from exc

    async def start(self) -> None:
        """Register, send the first heartbeat and start the heartbeat task."""
        if self._task is not None:
            return
        client = self._client()
        try:
            await self._refuse_duplicate(client)  # again: a twin may have started since
            await self._register(client)
            # Claimed at once, before the first probe (which may take seconds): a new TTL
            # check is critical with no output, which reads as nobody's, and a twin with
            # the same id starting meanwhile took the registration over.
            await self._report(client, HealthReport.critical("starting: first check pending"))
            await self._beat(client)
        except CONSUL_ERRORS as exc:
            await self.stop()
            raise self._unavailable(exc) from exc
        except BaseException:  # DuplicateInstance or cancellation: leave nothing behind
            await self.stop()
            raise
        self._task = asyncio.create_task(
            self._heartbeat(client), name=f"heartbeat:{self.registration.instance_id}"
        )

    async def deregister(self) -> None:
        """Stop the heartbeat and leave Consul (before draining, on graceful shutdown)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if not self._registered or self._consul is None:
            return
        self._registered = False
        try:
            async with asyncio.timeout(5):
                await self._consul.agent.service.deregister(self.registration.instance_id)
        except CONSUL_ERRORS as exc:
            log.warning(
                "could not deregister '%s' (%s: %s); its TTL lapses and Consul removes it after %s",
                self.registration.instance_id,
                type(exc).__name__,
                exc,
                self.deregister_critical_after,
            )
            return
        log.info("deregistered '%s'", self.registration.instance_id)

    def _client(self) -> consul.aio.Consul:
        """The Consul client, opened on first use (check_free or start)."""
        if self._consul is None:
            self._consul = open_consul(self.consul_url, self._token)
        return self._consul

    def _unavailable(self, exc: BaseException) -> ConsulUnavailable:
        return ConsulUnavailable(
            f"cannot register '{self.registration.instance_id}' in Consul at "
            f"{self.consul_url}: {type(exc).__name__}: {exc}"
        )

    async def stop(self) -> None:
        """Deregister (if still registered) and close the Consul client."""
        await self.deregister()
        client, self._consul = self._consul, None
        if client is not None:
            await client.close()

    async def _refuse_duplicate(self, client: consul.aio.Consul) -> None:
        # A registration whose check is kept updated has a live owner, whatever it
        # reports (a worker without MongoDB keeps its check critical on purpose); one
        # left behind by a crashed process lapses within its TTL ("TTL expired").
        if not await self._owner_alive(client):
            return
        reg = self.registration
        log.warning(
            "'%s' is already registered and kept updated; waiting up to %.1fs to see "
            "whether its owner is alive (a crashed predecessor's TTL lapses)",
            reg.instance_id,
            self.ttl + _OWNER_SLACK,
        )
        deadline = time.monotonic() + self.ttl + _OWNER_SLACK
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.5, self.ttl / 10))
            if not await self._owner_alive(client):
                return
        raise DuplicateInstance(
            f"instance id '{reg.instance_id}' of service '{reg.service}' is kept updated "
            "by another live process; give every process its own SERVICE_ID "
            "(or its own port when the id is derived from host and port)"
        )

    async def _owner_alive(self, client: consul.aio.Consul) -> bool:
        """Whether the check exists and has not lapsed: passing or warning, or critical
        with its owner's own reason rather than Consul's "TTL expired"."""
        async with asyncio.timeout(5):
            checks = await client.agent.checks()
        check = checks.get(self.check_id) if isinstance(checks, dict) else None
        if not isinstance(check, dict):
            return False
        status, output = str(check.get("Status")), str(check.get("Output") or "")
        if status in ("passing", "warning"):
            return True
        return status == "critical" and bool(output) and not output.startswith("TTL expired")

    async def _register(self, client: consul.aio.Consul) -> None:
        reg = self.registration
        check = consul.Check.ttl(to_go(self.ttl)) | {
            "DeregisterCriticalServiceAfter": self.deregister_critical_after
        }
        async with asyncio.timeout(5):
            await client.agent.service.register(
                reg.service,
                service_id=reg.instance_id,
                address=reg.address,
                port=reg.port,
                tags=reg.all_tags,
                meta=reg.all_meta,
                check=check,
            )
        self._registered = True
        log.info(
            "registered '%s' as %s:%d in service '%s' (ttl %gs, heartbeat every %gs)",
            reg.instance_id,
            reg.address,
            reg.port,
            reg.service,
            self.ttl,
            self.interval,
        )

    async def _heartbeat(self, client: consul.aio.Consul) -> None:
        # On a fixed schedule: a slow beat does not push the next one back (one that
        # overruns its interval is followed at once), so the gaps between updates do not
        # add up to a lapsed TTL.
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due = max(due + self.interval, loop.time())
            await asyncio.sleep(due - loop.time())
            try:
                await self._beat(client)
            except CONSUL_ERRORS as exc:
                log.warning(
                    "heartbeat of '%s' not delivered (%s: %s); next try in %gs",
                    self.registration.instance_id,
                    type(exc).__name__,
                    exc,
                    self.interval,
                )

    async def _beat(self, client: consul.aio.Consul) -> None:
        report = await self._run_probe(client)
        await self._deliver(client, report)
        if self._last is None or self._last.status != report.status:
            level = logging.INFO if report.status == "passing" else logging.WARNING
            log.log(
                level, "'%s' is %s %s", self.registration.instance_id, report.status, report.reason
            )
        self._last = report

    async def _deliver(self, client: consul.aio.Consul, report: HealthReport) -> None:
        """Send `report`; register again first when the agent has forgotten the check."""
        if not await self._report(client, report):
            log.warning(
                "consul does not know '%s' any more (agent restarted?); registering again",
                self.registration.instance_id,
            )
            await self._register(client)
            await self._report(client, report)

    async def _run_probe(self, client: consul.aio.Consul) -> HealthReport:
        """The probe's report, within `probe_timeout`. Every `interval` it runs, the last
        report is sent again: the TTL does not lapse while a slow probe is still allowed."""
        try:
            probe = asyncio.ensure_future(self._probe())
        except Exception as exc:  # a probe that fails before it is awaited
            return _raised(exc)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.probe_timeout):
                while True:
                    done, _ = await asyncio.wait((probe,), timeout=self.keep_alive_in(loop.time()))
                    if done:
                        break
                    await self._keep_alive(client)
        except TimeoutError:
            if not probe.done():
                return HealthReport.critical(
                    f"health probe gave no answer within {self.probe_timeout:g}s"
                )
        finally:
            if not probe.done():
                probe.cancel()
                await asyncio.wait((probe,))
        return _outcome(probe)

    def keep_alive_in(self, now: float) -> float:
        """Seconds until the next keep-alive while a probe runs: an interval after the
        last update Consul took, never sooner than a quarter interval (a fast probe
        answers first; a keep-alive that failed is not retried in a tight loop). Counted
        from the probe's start, one lost keep-alive during a slow probe let the check go
        three intervals, its whole TTL, without an update (found in review)."""
        if self._sent_at is None:
            return self.interval
        return max(self._sent_at + self.interval - now, self.interval / 4)

    async def _keep_alive(self, client: consul.aio.Consul) -> None:
        """Tell Consul again what it was told last, while the probe is still running."""
        if self._sent is None:
            return
        try:
            await self._deliver(client, self._sent)
        except CONSUL_ERRORS as exc:
            log.warning(
                "keep-alive of '%s' not delivered while its probe runs (%s: %s)",
                self.registration.instance_id,
                type(exc).__name__,
                exc,
            )

    async def _report(self, client: consul.aio.Consul, report: HealthReport) -> bool:
        """Send one TTL update; False when the agent does not know the check."""
        update = {
            "passing": client.agent.check.ttl_pass,
            "warning": client.agent.check.ttl_warn,
            "critical": client.agent.check.ttl_fail,
        }[report.status]
        async with asyncio.timeout(min(max(self.interval / 3, _REPORT_MIN), 5.0)):
            known = await update(self.check_id, report.reason[:_REASON_MAX] or None)
        if known:
            self._sent = report
            self._sent_at = asyncio.get_running_loop().time()
        return bool(known)


def _outcome(probe: asyncio.Future[HealthReport]) -> HealthReport:
    """What a finished probe said; one that raised is a sick process (critical)."""
    if probe.cancelled():
        return HealthReport.critical("health probe was cancelled")
    exc = probe.exception()
    if exc is None:
        return probe.result()
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: not the probe's verdict
        raise exc
    return _raised(exc)


def _raised(exc: Exception) -> HealthReport:
    """A broken probe is a sick process: report it, keep beating."""
    return HealthReport.critical(f"health probe raised {type(exc).__name__}: {exc}")
