"""Registration in Consul through the shared discovery library, with our health as the probe."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import UTC, datetime

from dialogue_worker.errors import DuplicateWorker, WorkerError
from dialogue_worker.services.health import PING_GRACE, PING_TIMEOUT, Status, WorkerHealth
from dialogue_worker.settings import WorkerSettings
from discovery import (
    WORKER_META_APP_ID,
    WORKER_META_STARTED,
    WORKER_TAG,
    DiscoveryError,
    DuplicateInstance,
    HealthReport,
    Registrar,
    Registration,
    instance_id_for,
)

#: How long the heartbeat waits for one health check: its MongoDB ping and grace, and
#: half a second to report (the registry keeps the TTL alive meanwhile).
PROBE_TIMEOUT = PING_TIMEOUT + PING_GRACE + 0.5

log = logging.getLogger(__name__)


class RegistrationFailed(WorkerError):
    """Consul could not be reached to register this worker."""


def instance_id(settings: WorkerSettings) -> str:
    """SERVICE_ID, else derived by discovery from the advertised address and port."""
    if settings.service_id:
        return settings.service_id
    return instance_id_for(settings.advertise_host, settings.worker_port, env={})


class ConsulRegistration:
    """start() registers and heartbeats; stop() deregisters; both safe to call twice."""

    def __init__(self, settings: WorkerSettings, instance_id: str, health: WorkerHealth) -> None:
        self.instance_id = instance_id
        self._health = health
        started = datetime.now(UTC).isoformat(timespec="milliseconds")
        registration = Registration(
            instance_id=instance_id,
            address=settings.advertise_host,
            port=settings.worker_port,
            version=settings.version,
            service=settings.worker_service,
            tags=(WORKER_TAG,),
            # When this process started: tells a restart from its predecessor in the UI.
            meta={WORKER_META_APP_ID: settings.worker_app_id, WORKER_META_STARTED: started},
        )
        token = settings.consul_token.get_secret_value() if settings.consul_token else None
        if token is None:
            log.log(
                logging.INFO if settings.dialogue_env == "local" else logging.WARNING,
                "no CONSUL_TOKEN: registering without an ACL token, which works only while "
                "Consul runs without ACLs (local mode does; docs/security.md)",
            )
        self._registrar = Registrar(
            settings.consul_url,
            registration,
            self.probe,
            ttl=settings.heartbeat_ttl,
            # The check's own bound: at a short HEARTBEAT_TTL the heartbeat's interval
            # (TTL/3) would report a slow but answering MongoDB as no answer.
            probe_timeout=PROBE_TIMEOUT,
            token=token,
        )
        self._registered = False

    async def probe(self) -> HealthReport:
        state = await self._health.check()
        if state.status is Status.PASSING:
            return HealthReport.passing(state.reason or "")  # e.g. writes waiting for Kafka
        if state.status is Status.WARNING:
            return HealthReport.warning(state.reason or "warning")
        return HealthReport.critical(state.reason or "critical")

    @property
    def last_report(self) -> HealthReport | None:
        """What the last heartbeat told Consul."""
        return self._registrar.last_report

    async def check(self) -> None:
        """Before the consumer joins the group: Consul answers and no live worker holds
        this instance id. Found only at registration, either made the worker join, take
        partitions and leave again (a rebalance of the whole group each time it was
        restarted during a Consul outage)."""
        await self._refused_as_worker(self._registrar.check_free())

    async def start(self) -> None:
        await self._refused_as_worker(self._registrar.start())
        self._registered = True

    async def _refused_as_worker(self, step: Awaitable[None]) -> None:
        try:
            await step
        except DuplicateInstance as exc:
            raise DuplicateWorker(
                f"a worker registered as {self.instance_id!r} is already running; "
                "give this one another SERVICE_ID (or stop the other)"
            ) from exc
        except DiscoveryError as exc:
            raise RegistrationFailed(str(exc)) from exc

    async def stop(self) -> None:
        """Deregister when registered; close the Consul client whatever was done."""
        try:
            if self._registered:
                self._registered = False
                await self._registrar.deregister()
        finally:
            await self._registrar.stop()
