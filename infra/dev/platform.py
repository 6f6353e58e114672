"""The gateway and the workers of `make dev` as local processes: up, scale, down, status."""

from __future__ import annotations

import itertools
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from discovery.models import WORKER_META_STARTED
from infra.dev.demo import demo_pair, warm_up
from infra.dev.http import call
from infra.dev.settings import DEFAULT_WORKERS, DevSettings, service_environment
from infra.dev.state import DevState, locked
from infra.local.process import ManagedProcess
from infra.local.service import Progress, ServiceError
from infra.local.settings import REPO_ROOT
from infra.local.stack import Stack
from platform_common.local import LOCAL_ADMIN_TOKEN

SERVICE = "dialogue"
STOP_TIMEOUT = 30.0  # SIGTERM -> SIGKILL; a worker needs SHUTDOWN_GRACE (10 s) at most


class DevProgress(Progress):
    """One line per step on stderr, with the time since the command started."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def step(self, service: str, message: str) -> None:
        elapsed = time.monotonic() - self.t0
        print(f"[dev {elapsed:6.1f}s] {service:<8} {message}", file=sys.stderr, flush=True)


class DevError(RuntimeError):
    """A step of make dev failed; the message says which and where to look."""


@dataclass(frozen=True)
class WorkerView:
    index: int
    service_id: str
    url: str
    pid: int | None
    passing: bool
    log: str


@dataclass(frozen=True)
class DevStatus:
    gateway_pid: int | None
    gateway_ready: bool
    workers: list[WorkerView]
    demo_chat: str | None


class DevPlatform:
    """Starts, scales and stops exactly the processes it records under settings.run_dir."""

    def __init__(self, settings: DevSettings | None = None, progress: Progress | None = None):
        self.settings = settings or DevSettings.from_env()
        self.progress = progress or DevProgress()
        self.run_dir = self.settings.run_dir
        #: When this command started each worker it (re)started: its registration must
        #: be younger, as a SIGKILLed predecessor's stays passing until its TTL lapses.
        self._started: dict[int, datetime] = {}

    # --- processes ---------------------------------------------------------------------
    def gateway(self) -> ManagedProcess:
        return ManagedProcess("gateway", self.run_dir, "-m gateway")

    def worker(self, index: int) -> ManagedProcess:
        return ManagedProcess(f"worker-{index}", self.run_dir, "-m dialogue_worker")

    def _step(self, name: str, message: str) -> None:
        self.progress.step(name, message)

    def _start(self, proc: ManagedProcess, module: str, env: dict[str, str], port: int) -> None:
        if _listening(self.settings.host, port):
            raise DevError(
                f"{proc.name}: port {port} is already in use by something else "
                "(stop it, or choose other ports: DEV_GATEWAY_PORT / DEV_WORKER_BASE_PORT)"
            )
        child_env = service_environment(os.environ, env)
        pid = proc.start([sys.executable, "-m", module], cwd=REPO_ROOT, env=child_env)
        self._step(proc.name, f"starting (pid {pid}, port {port}, log {proc.log_file})")

    # --- commands ----------------------------------------------------------------------
    def up(self, workers: int | None = None) -> DevStatus:
        """Infrastructure, N workers and the gateway; waits until all serve. Idempotent."""
        with locked(self.run_dir):
            state = DevState.load(self.run_dir)
            stack = Stack(self.settings.local, self.progress)
            try:
                stack.up()
            except ServiceError as exc:
                raise DevError(f"infrastructure: {exc}") from exc
            finally:
                # Also when up failed or was interrupted: what it started and could not
                # stop again is recorded, so `down` stops it.
                state.infra_started = sorted(set(state.infra_started) | set(stack.started))
                state.save(self.run_dir)
            self._check_consul()
            wanted = workers if workers is not None else (len(state.workers) or DEFAULT_WORKERS)
            self._scale(state, wanted, wait=False)
            gateway = self.gateway()
            if gateway.pid() is None:
                env = self.settings.gateway_env()
                self._start(gateway, "gateway", env, self.settings.gateway_port)
            else:
                self._step("gateway", f"already running (pid {gateway.pid()})")
            self._wait_gateway_ready()
            self._wait_membership(state.workers, [])
            alice, _, chat = demo_pair(self.settings.api_url)
            if state.demo_chat != chat:
                state.demo_chat = chat
                state.save(self.run_dir)
            # The first read of a fresh database is the slowest (FerretDB creates its
            # tables); make it here rather than in the user's first curl.
            warm_up(self.settings.api_url, chat, alice)
            return self._status(state)

    def scale(self, workers: int) -> DevStatus:
        """Add workers (wait until the gateway routes to them) or remove the newest (SIGTERM)."""
        with locked(self.run_dir):
            state = DevState.load(self.run_dir)
            if self.gateway().pid() is None:
                raise DevError("the platform is not running here: start it with `make dev`")
            self._scale(state, workers, wait=True)
            return self._status(state)

    def down(self) -> list[str]:
        """Stop the gateway, every worker and the infrastructure that `up` started."""
        with locked(self.run_dir):
            state = DevState.load(self.run_dir)
            stopped = ["gateway"] if self.gateway().stop(STOP_TIMEOUT) else []
            if stopped:
                self._step("gateway", "stopped")
            indexes = set(state.workers) | set(self._worker_files())
            stopped += self._stop_workers(sorted(indexes))
            if state.infra_started:
                stack = Stack(self.settings.local, self.progress)
                stopped += stack.down(state.infra_started)
            DevState().save(self.run_dir)
            return stopped

    def status(self) -> DevStatus:
        return self._status(DevState.load(self.run_dir))

    # --- workers -----------------------------------------------------------------------
    def _worker_files(self) -> Iterable[int]:
        for pid_file in self.run_dir.glob("worker-*.pid"):
            suffix = pid_file.stem.removeprefix("worker-")
            if suffix.isdigit():
                yield int(suffix)

    def _scale(self, state: DevState, wanted: int, wait: bool) -> None:
        if wanted < 0:
            raise DevError("the number of workers cannot be negative")
        if wanted > self.settings.partitions:
            self._step(
                "workers",
                f"{wanted} workers > {self.settings.partitions} partitions: "
                "the extra ones serve reads but consume nothing",
            )
        keep, removed, added = plan_workers(state.workers, wanted)
        if added and (problem := self.settings.worker_port_problem(max(added))):
            raise DevError(problem)
        stopped = self._stop_workers(removed)
        state.workers = sorted(keep + added)
        state.save(self.run_dir)
        for idx in state.workers:
            if self.worker(idx).pid() is not None:
                continue
            if idx in keep:
                self._step(f"worker-{idx}", "was not running: starting it again")
            now = datetime.now(UTC)  # to the millisecond, as the registration has it
            self._started[idx] = now.replace(microsecond=now.microsecond // 1000 * 1000)
            self._start(
                self.worker(idx),
                "dialogue_worker",
                self.settings.worker_env(idx),
                self.settings.worker_port(idx),
            )
        if wait:
            self._wait_membership(state.workers, [self.settings.service_id(i) for i in removed])
        if added or stopped:
            self._step("workers", f"{len(state.workers)} running: {self._ids(state.workers)}")

    def _stop_workers(self, indexes: list[int]) -> list[str]:
        def stop(index: int) -> str | None:
            proc = self.worker(index)
            if proc.stop(STOP_TIMEOUT):  # SIGTERM: deregister, finish the batch, commit
                self._step(proc.name, "stopped (SIGTERM)")
                return proc.name
            return None

        with ThreadPoolExecutor(max_workers=max(1, len(indexes))) as pool:
            return [name for name in pool.map(stop, indexes) if name]

    def _ids(self, indexes: Iterable[int]) -> str:
        return ", ".join(self.settings.service_id(i) for i in indexes) or "none"

    # --- waiting -----------------------------------------------------------------------
    def _until(self, what: str, check: Callable[[], bool], logs: Iterable[ManagedProcess]) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout
        procs = list(logs)
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.pid() is None:
                    raise DevError(
                        f"{proc.name} exited; its log {proc.log_file} ends with:\n{_tail(proc)}"
                    )
            if check():
                return
            time.sleep(0.25)
        raise DevError(
            f"{what} not reached after {self.settings.ready_timeout:.0f}s; logs: "
            + ", ".join(str(p.log_file) for p in procs)
        )

    def _check_consul(self) -> None:
        url = f"{self.settings.consul_url}/v1/status/leader"
        try:
            leader = call("GET", url, token=self.settings.consul_token, timeout=3)
        except OSError as exc:
            raise DevError(f"Consul does not answer at {self.settings.consul_url}: {exc}") from exc
        if leader.status != 200 or not leader.body:
            raise DevError(f"Consul at {self.settings.consul_url} has no leader: {leader.body}")

    def _wait_gateway_ready(self) -> None:
        t0 = time.monotonic()
        try:
            self._until("gateway /ready", self._gateway_ready, [self.gateway()])
        except DevError as exc:
            try:
                last = call("GET", f"{self.settings.api_url}/ready", timeout=3).body
            except OSError as error:
                last = str(error)
            raise DevError(f"{exc}; its last /ready answer: {last}") from None
        self._step("gateway", f"ready at {self.settings.api_url} ({time.monotonic() - t0:.1f}s)")

    def _gateway_ready(self) -> bool:
        try:
            return call("GET", f"{self.settings.api_url}/ready", timeout=3).status == 200
        except OSError:
            return False

    def passing(self) -> dict[str, Registration]:
        """The instances of service `dialogue` passing their check in Consul, by id."""
        url = f"{self.settings.consul_url}/v1/health/service/{SERVICE}?passing=true"
        try:
            answer = call("GET", url, token=self.settings.consul_token, timeout=3)
        except OSError:
            return {}
        if answer.status != 200 or not isinstance(answer.body, list):
            return {}
        found = {}
        for entry in answer.body:
            service = entry["Service"]
            started = (service.get("Meta") or {}).get(WORKER_META_STARTED)
            found[service["ID"]] = Registration(service["Port"], _parse_time(started))
        return found

    def routed(self) -> dict[str, int | None]:
        """The instances in the gateway's balancer (its admin view): id -> port.

        An instance ejected after a failed call counts: ejection is a cool-down that
        ends with the next read it is offered, so without reads it never ends.
        """
        url = f"{self.settings.api_url}/v1/admin/instances"
        try:
            answer = call("GET", url, token=LOCAL_ADMIN_TOKEN, timeout=3)
        except OSError:
            return {}
        if answer.status in (401, 403):
            raise DevError(
                f"{url}: admin token refused ({answer.status}): {answer.body} "
                "(is the gateway on this port the one make dev started?)"
            )
        if answer.status != 200:  # busy or starting: the caller's deadline names the logs
            return {}
        return {item["id"]: urlsplit(item.get("url", "")).port for item in answer.body["data"]}

    def _registered(self, index: int, seen: Mapping[str, Registration]) -> bool:
        """Worker `index` passes in Consul at its own port and, if this command started
        it, by a registration made since (not its SIGKILLed predecessor's)."""
        entry = seen.get(self.settings.service_id(index))
        if entry is None or entry.port != self.settings.worker_port(index):
            return False
        since = self._started.get(index)
        return since is None or (entry.started is not None and entry.started >= since)

    def _serving(
        self, index: int, seen: Mapping[str, Registration], routed: Mapping[str, int | None]
    ) -> bool:
        """Registered (above) and routed by the gateway at its own port."""
        sid = self.settings.service_id(index)
        return self._registered(index, seen) and routed.get(sid) == self.settings.worker_port(index)

    def _wait_membership(self, indexes: list[int], gone: list[str]) -> None:
        """Until every worker passes in Consul and the gateway routes to exactly them."""
        t0 = time.monotonic()
        wanted = {self.settings.service_id(i) for i in indexes}

        def settled() -> bool:
            seen, routed = self.passing(), self.routed()
            return all(self._serving(i, seen, routed) for i in indexes) and not (
                set(gone) & (seen.keys() | routed.keys())
            )

        self._until(
            f"workers {sorted(wanted)} passing in Consul and routed by the gateway",
            settled,
            [self.gateway(), *(self.worker(i) for i in indexes)],
        )
        self._step(
            "workers",
            f"{len(wanted)} passing in Consul and routed by the gateway "
            f"({time.monotonic() - t0:.1f}s)",
        )

    def _status(self, state: DevState) -> DevStatus:
        seen = self.passing()
        views = [
            WorkerView(
                index=i,
                service_id=self.settings.service_id(i),
                url=f"http://{self.settings.host}:{self.settings.worker_port(i)}",
                pid=self.worker(i).pid(),
                passing=self._registered(i, seen),
                log=str(self.worker(i).log_file),
            )
            for i in state.workers
        ]
        gateway_pid = self.gateway().pid()
        ready = gateway_pid is not None and self._gateway_ready()
        return DevStatus(gateway_pid, ready, views, state.demo_chat)


@dataclass(frozen=True)
class Registration:
    """What make dev reads of a worker's Consul registration."""

    port: int
    started: datetime | None  # meta `started`: when the registering process started


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def plan_workers(current: Iterable[int], wanted: int) -> tuple[list[int], list[int], list[int]]:
    """(kept, removed, added) worker indexes: the newest go first, new ones fill the gaps."""
    ordered = sorted(current)
    keep, removed = ordered[:wanted], ordered[wanted:]
    free = (i for i in itertools.count(1) if i not in keep)
    added = [next(free) for _ in range(wanted - len(keep))]
    return keep, removed, added


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _tail(proc: ManagedProcess, lines: int = 20) -> str:
    try:
        return "\n".join(proc.log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
