"""The local stack: provision, start, wait for, inspect and stop every service."""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from infra.local.consul import Consul
from infra.local.ferretdb import FerretDB
from infra.local.kafka import CLUSTER_ID_FILE, Kafka, node_names
from infra.local.locks import exclusive
from infra.local.mariadb import MariaDB
from infra.local.postgres import Postgres
from infra.local.process import ManagedProcess
from infra.local.provisioning import provision_all
from infra.local.service import Progress, Service, ServiceError
from infra.local.settings import (
    KAFKA_NODE_COUNTS,
    REPO_ROOT,
    LocalSettings,
    postgres_fallback_dir,
)

#: In each run folder: held by every `up` and `down` on it, so two never interleave.
#: Its presence also tells `purge` that infra.local has used a folder.
LOCK_FILE = "infra.lock"
#: The default run folder, which `purge` (`make clean`) removes whatever it holds.
DEFAULT_RUN_DIR = REPO_ROOT / ".run"


class PrintProgress(Progress):
    """One line per step on stderr, with the time since the stack started."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def step(self, service: str, message: str) -> None:
        elapsed = time.monotonic() - self.t0
        print(f"[infra {elapsed:6.1f}s] {service:<8} {message}", file=sys.stderr, flush=True)


class StopError(ServiceError):
    """Some services could not be stopped; `down` stopped the others."""

    def __init__(self, stopped: list[str], failures: dict[str, BaseException]) -> None:
        self.stopped = stopped
        self.failures = failures
        reasons = "; ".join(
            f"{name} ({type(error).__name__}: {error})" for name, error in failures.items()
        )
        super().__init__(f"could not stop {reasons}; stopped: {', '.join(stopped) or 'nothing'}")


@dataclass(frozen=True)
class Status:
    name: str
    pid: int | None
    ready: bool
    endpoint: str
    log: str


class Stack:
    """Every local service, in start order (a service after those it requires)."""

    def __init__(
        self,
        settings: LocalSettings | None = None,
        progress: Progress | None = None,
        services: Sequence[Service] | None = None,
    ) -> None:
        self.settings = settings or LocalSettings.from_env()
        self.progress = progress or PrintProgress()
        if services is None:
            services = [
                MariaDB(self.settings),
                Postgres(self.settings),
                Consul(self.settings),
                *(Kafka(self.settings, n) for n in range(1, self.settings.kafka_nodes + 1)),
                FerretDB(self.settings),  # last: it starts once PostgreSQL answers
            ]
        self.services = {s.name: s for s in services}
        #: What this object started and has not stopped (also when `up` failed part-way).
        self.started: list[str] = []

    @property
    def postgres(self) -> Postgres:
        service = self.services["postgres"]
        assert isinstance(service, Postgres)
        return service

    def _pick(self, names: Iterable[str] | None) -> list[Service]:
        if names is None:
            return list(self.services.values())
        unknown = set(names) - set(self.services)
        if unknown:
            raise ServiceError(
                f"unknown service(s): {', '.join(sorted(unknown))}; "
                f"known: {', '.join(self.services)}"
            )
        return [s for s in self.services.values() if s.name in set(names)]

    def with_requirements(self, names: Iterable[str] | None) -> list[str]:
        """The services named and those they require (transitively), in start order."""
        wanted = {s.name for s in self._pick(names)}
        todo = list(wanted)
        while todo:
            for required in self.services[todo.pop()].requires:
                if required not in wanted:
                    wanted.add(required)
                    todo.append(required)
        return [name for name in self.services if name in wanted]

    def process(self, name: str) -> ManagedProcess:
        return _managed(self.services[name])

    def _ready(self, service: Service) -> bool:
        try:
            service.probe()
        except Exception:  # any failure of the protocol check means "not ready yet"
            return False
        return True

    def names(self, command: str) -> list[str]:
        """The service names `command` accepts (`down` and `status` also take the other
        Kafka layout's nodes; `purge` none)."""
        if command == "down":
            others = [n for n in [*node_names(1), *node_names(3)] if n not in self.services]
            return [*self.services, *others]
        if command == "status":
            return [*self.services, *(s.name for s in self._other_layout())]
        return [] if command == "purge" else list(self.services)

    @contextmanager
    def _locked(self, services: Iterable[Service]) -> Iterator[None]:
        """The lock of every run folder these services keep their pid files in."""
        services = list(services)
        for service in services:
            service.make_run_dir()
        folders = sorted({self.settings.run_dir, *(s.run_dir for s in services)})
        with ExitStack() as held:
            for folder in folders:
                held.enter_context(exclusive(folder / LOCK_FILE, self._waiting(folder)))
            yield

    def _waiting(self, folder: Path) -> Callable[[], None]:
        def say() -> None:
            self.progress.step("infra", f"waiting for another infra command ({folder})")

        return say

    def up(self, names: Iterable[str] | None = None) -> list[str]:
        """Start what is not running and wait until each answers; returns those started.

        A service's requirements are started too, and answer before it starts. When it
        fails or is interrupted, what it started is stopped again.
        """
        chosen = self._pick(self.with_requirements(names))
        with self._locked(chosen):
            return self._up(chosen)

    def _up(self, chosen: list[Service]) -> list[str]:
        if any(isinstance(s, Kafka) for s in chosen) and self._other_kafka_layout():
            raise ServiceError(
                f"Kafka runs with another node count than LOCAL_KAFKA_NODES="
                f"{self.settings.kafka_nodes} ({', '.join(self._other_kafka_layout())}): "
                "stop it first (make infra-down), then start again"
            )
        todo = [s for s in chosen if self.process(s.name).pid() is None]
        for service in chosen:
            if service not in todo:
                self.progress.step(service.name, f"already running at {service.endpoint()}")
        provision_all(todo, self.progress)
        started: list[str] = []
        settled: set[str] = set()

        def settle(service: Service) -> None:
            self._wait_ready(service)
            # Idempotent: for a service that was already running it brings older set-ups
            # up to date, and finishes one that an interrupted `up` left undone.
            service.after_ready(self.progress)
            settled.add(service.name)

        try:
            for service in todo:
                for required in service.requires:
                    if required not in settled:
                        settle(self.services[required])  # started here or running before
                self._start(service, started)
            for service in chosen:
                if service.name not in settled:
                    settle(service)
        except BaseException as exc:  # Ctrl-C too: leave nothing half-started behind
            try:
                self._down(started)
            except Exception as error:  # reported with the failure that caused it
                exc.add_note(f"stopping what this command started failed too: {error}")
            raise
        return started

    def _start(self, service: Service, started: list[str]) -> None:
        if self._ready(service):
            raise ServiceError(
                f"{service.name}: something not started by infra already answers at "
                f"{service.endpoint()}; stop it or change its port (see README)"
            )
        service.data_dir.mkdir(parents=True, exist_ok=True)
        service.prepare(self.progress)
        proc = self.process(service.name)
        started.append(service.name)  # before the start: an interrupt must stop it too
        self.started.append(service.name)
        try:
            pid = proc.start(service.argv(), cwd=service.data_dir, env=service.env())
        except OSError as exc:
            raise ServiceError(f"{service.name} could not be started: {exc}") from exc
        self.progress.step(service.name, f"starting (pid {pid}, log {proc.log_file})")

    def _wait_ready(self, service: Service) -> None:
        proc = self.process(service.name)
        t0 = time.monotonic()
        timeout = service.ready_timeout
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if proc.pid() is None:
                raise ServiceError(
                    f"{service.name} exited during start-up; its log "
                    f"{proc.log_file} ends with:\n{_tail(proc)}"
                )
            if self._ready(service):
                self.progress.step(
                    service.name, f"ready at {service.endpoint()} ({time.monotonic() - t0:.1f}s)"
                )
                return
            time.sleep(0.2)
        raise ServiceError(
            f"{service.name} not ready after {timeout:.0f}s; "
            f"log {proc.log_file} ends with:\n{_tail(proc)}"
        )

    def down(self, names: Iterable[str] | None = None) -> list[str]:
        """Stop what we started (by pid), in reverse order; returns those stopped.

        Stopping everything also stops Kafka nodes of the other layout (one node or
        three), so `infra-down` without LOCAL_KAFKA_NODES stops a cluster too. A service
        that cannot be stopped does not keep the others running: they are stopped, then
        a StopError names it."""
        wanted = None if names is None else [n for n in names if n in self.services]
        with self._locked(self._pick(wanted)):
            return self._down(names)

    def _down(self, names: Iterable[str] | None) -> list[str]:
        stopped: list[str] = []
        failures: dict[str, BaseException] = {}
        others = {*node_names(1), *node_names(3)} - set(self.services)
        names = None if names is None else list(names)
        wanted = None if names is None else [n for n in names if n not in others]
        for service in reversed(self._pick(wanted)):
            try:
                if self.process(service.name).stop(sig=service.stop_signal):
                    self.progress.step(service.name, "stopped")
                    stopped.append(service.name)
            except Exception as exc:  # ProcessError, OSError: the others still go
                failures[service.name] = exc
                continue
            if service.name in self.started:
                self.started.remove(service.name)
        # Nodes of the other layout: all of them with no names (infra-down), else those
        # named (make dev-down after make dev KAFKA_NODES=3, without KAFKA_NODES).
        other_wanted = set(others) if names is None else set(names) & others
        for name in self._other_kafka_layout():
            if name in other_wanted:
                try:
                    if self._other_kafka(name).stop():
                        self.progress.step(name, "stopped")
                        stopped.append(name)
                except Exception as exc:  # as above
                    failures[name] = exc
        if failures:
            raise StopError(stopped, failures)
        return stopped

    def _other_kafka(self, name: str) -> ManagedProcess:
        marker = str(self.settings.run_dir / name / "server.properties")
        return ManagedProcess(name, self.settings.run_dir, marker)

    def _other_kafka_layout(self) -> list[str]:
        """Kafka nodes running that belong to the other layout (one node or three)."""
        others = sorted({*node_names(1), *node_names(3)} - set(self.services))
        return [name for name in others if self._other_kafka(name).pid() is not None]

    def kill(self, name: str) -> bool:
        """SIGKILL a service, as a crash would."""
        return self.process(name).kill()

    def status(self, names: Iterable[str] | None = None) -> list[Status]:
        """Each service named (default: all): its pid, whether it answers, where its log is.

        Kafka as the layout that runs: when no node of LOCAL_KAFKA_NODES's layout runs
        and one of the other layout does (`make dev KAFKA_NODES=3`, then a plain `make
        infra-status`), the other layout's nodes are listed instead."""
        result = []
        for service in self._shown(names):
            proc = _managed(service)
            pid = proc.pid()
            ready = pid is not None and self._ready(service)
            result.append(Status(service.name, pid, ready, service.endpoint(), str(proc.log_file)))
        return result

    def _shown(self, names: Iterable[str] | None) -> list[Service]:
        """The services `status` reports: those named (the other Kafka layout's nodes
        included), else every one, Kafka as the layout that runs."""
        others = self._other_layout()
        if names is not None:
            names = set(names)
            wanted = [n for n in names if n not in {s.name for s in others}]
            return [*self._pick(wanted), *(s for s in others if s.name in names)]
        shown = self._pick(None)
        kafka = [s for s in shown if isinstance(s, Kafka)]
        if any(_managed(s).pid() is not None for s in kafka) or all(
            _managed(s).pid() is None for s in others
        ):
            return shown
        at = shown.index(kafka[0]) if kafka else len(shown)
        rest = [s for s in shown if s not in kafka]
        return [*rest[:at], *others, *rest[at:]]

    def _other_layout(self) -> list[Service]:
        """The Kafka nodes of the node count LOCAL_KAFKA_NODES does not say."""
        count = next(n for n in KAFKA_NODE_COUNTS if n != self.settings.kafka_nodes)
        settings = dataclasses.replace(self.settings, kafka_nodes=count)
        return [Kafka(settings, node) for node in range(1, count + 1)]

    def purge_folders(self) -> list[Path]:
        """What `purge` removes: the run folder, and PostgreSQL's when it is the run
        folder's own in /var/tmp (as root; a LOCAL_POSTGRES_RUN_DIR elsewhere may be
        shared, and is kept). ServiceError when the run folder does not look like one."""
        run_dir = self.settings.run_dir
        for kept in _kept_folders(self.settings):
            if run_dir == kept or run_dir in kept.parents:
                raise ServiceError(
                    f"refusing to remove the run folder {run_dir}: it holds {kept} "
                    "(check LOCAL_RUN_DIR)"
                )
        if run_dir.exists() and run_dir != DEFAULT_RUN_DIR and not (run_dir / LOCK_FILE).exists():
            raise ServiceError(
                f"refusing to remove {run_dir}: it holds no {LOCK_FILE}, so no infra command "
                "has used it as its run folder (check LOCAL_RUN_DIR)"
            )
        folders = [run_dir]
        fallback = postgres_fallback_dir(run_dir)
        if self.settings.postgres_run_dir == fallback:
            folders.append(fallback)
        return folders

    def purge(self) -> tuple[list[str], list[Path]]:
        """Stop every service, then remove `purge_folders()`: (stopped, removed).

        Nothing is removed when a service cannot be stopped (StopError): its pid file
        is what stops it later."""
        folders = self.purge_folders()  # checked before `down` makes any folder
        with self._locked(self._pick(None)):
            stopped = self._down(None)
            removed = [folder for folder in folders if folder.exists()]
            for folder in removed:
                if folder == self.settings.run_dir and folder != DEFAULT_RUN_DIR:
                    self._remove_own(folder)  # LOCAL_RUN_DIR may hold other files too
                else:
                    shutil.rmtree(folder)  # a link is refused (OSError), not followed
        return stopped, removed

    def _remove_own(self, run_dir: Path) -> None:
        """Remove what infra commands make in a run folder set by LOCAL_RUN_DIR (each
        service's folder, logs and pid file, the lock, `make dev`'s folder), then the folder
        if nothing else is left in it: anything else there is someone else's."""
        services = {*self.services, *node_names(1), *node_names(3), "dev"}
        own = {f"{name}{suffix}" for name in services for suffix in ("", ".log", ".log.1", ".pid")}
        for entry in run_dir.iterdir():
            if entry.name in own | {LOCK_FILE, CLUSTER_ID_FILE}:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        with suppress(OSError):  # not empty: the others' files stay
            run_dir.rmdir()


def _managed(service: Service) -> ManagedProcess:
    """The process of `service`, found by its pid file."""
    return ManagedProcess(service.name, service.run_dir, service.marker)


def _kept_folders(settings: LocalSettings) -> list[Path]:
    """Folders `purge` never removes, nor any folder holding one of them."""
    kept = [Path("/"), REPO_ROOT, settings.cache_dir]
    try:
        kept.append(Path.home().resolve())
    except RuntimeError:  # no HOME and no passwd entry: no home folder to keep
        pass
    return kept


def _tail(proc: ManagedProcess, lines: int = 15) -> str:
    try:
        return "\n".join(proc.log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
