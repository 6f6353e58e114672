"""The shape every local service has: provision, prepare, run, probe."""

from __future__ import annotations

import abc
import signal
import urllib.request
from pathlib import Path

from infra.local.settings import LocalSettings

#: For HTTP calls to local processes (probes, make dev's calls): no proxy, whatever
#: http_proxy says, since urllib sends even 127.0.0.1 through it unless no_proxy names it.
LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServiceError(RuntimeError):
    """A step of a local service failed; the message says which and where its log is."""


class Service(abc.ABC):
    """One infrastructure service run as a local process."""

    name: str
    #: A string that appears in the process command line (guards pid reuse).
    marker: str
    #: Services that must answer before this one starts; `up` starts them too.
    requires: tuple[str, ...] = ()
    #: What asks the process to shut down cleanly (SIGKILL follows after a timeout).
    stop_signal: signal.Signals = signal.SIGTERM
    #: Seconds `up` waits for it to answer (after a start, or when found not answering).
    ready_timeout: float = 60.0

    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings

    @property
    def run_dir(self) -> Path:
        """Where its data folder, pid file and log are."""
        return self.settings.run_dir

    @property
    def data_dir(self) -> Path:
        return self.run_dir / self.name

    def make_run_dir(self) -> None:
        """Create the run folder; before anything (a lock, a pid file) is written there."""
        self.run_dir.mkdir(parents=True, exist_ok=True)

    @abc.abstractmethod
    def provision(self, progress: Progress) -> None:
        """Download/build/install what the service needs into the cache (idempotent)."""

    def prepare(self, progress: Progress) -> None:  # noqa: B027 - optional hook
        """One-time set-up of the data folder before the first start."""

    @abc.abstractmethod
    def argv(self) -> list[str]:
        """The command that runs the service in the foreground."""

    def env(self) -> dict[str, str] | None:
        """Environment for the process; None inherits ours."""
        return None

    @abc.abstractmethod
    def probe(self) -> None:
        """Raise unless the service answers its own protocol."""

    def after_ready(self, progress: Progress) -> None:  # noqa: B027 - optional hook
        """Set-up that needs the running service (users, databases).

        Idempotent: `up` runs it again for a service that was already running.
        """

    def endpoint(self) -> str:
        """Where clients reach it, for status output."""
        return ""


class Progress(abc.ABC):
    @abc.abstractmethod
    def step(self, service: str, message: str) -> None: ...
