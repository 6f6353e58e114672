"""Commands that reach a registry (apt, the Go proxy, Maven Central): bounded, and tried
twice when they fail.

A stalled mirror or proxy would otherwise hold `make infra-up` (and CI) until its own
time limit, and one dropped connection would fail the whole start. Each command gets a
time limit of its own; a command that fails gets one more try after a short pause, one
that ran out of time does not (it would cost as much again). The last failure is a
ServiceError that names the command and ends with its output.

Each command runs in a session of its own, which Ctrl-C does not reach: `Fetches`
keeps the commands of one provisioning run so that an interrupt, or another step's
failure, ends them at once (`cancel`) instead of waiting for a build to finish.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from infra.local.locks import Abandoned, exclusive
from infra.local.service import Progress, ServiceError

#: Tries of each command: the first, and one more for a transient failure.
ATTEMPTS = 2
#: Seconds between the tries.
PAUSE = 5.0


class Cancelled(ServiceError):
    """The step was stopped: the command was interrupted, or another step failed."""


class Fetches:
    """The registry commands of one provisioning run, so that `cancel` can end them."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[int, subprocess.Popen[str]] = {}

    @contextlib.contextmanager
    def in_this_thread(self) -> Iterator[None]:
        """run_fetching and cache_lock in this thread belong to this run while in the block."""
        _THREAD.fetches = self
        try:
            yield
        finally:
            _THREAD.fetches = None

    def cancel(self) -> None:
        """Kill every command running now (its whole process group); later ones never start."""
        with self._lock:
            self.cancelled.set()
            for proc in self._running.values():
                _kill_group(proc)

    def check(self, what: str) -> None:
        if self.cancelled.is_set():
            raise Cancelled(f"{what}: stopped")

    @contextlib.contextmanager
    def tracking(self, proc: subprocess.Popen[str]) -> Iterator[None]:
        with self._lock:
            self._running[proc.pid] = proc
            if self.cancelled.is_set():
                _kill_group(proc)
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(proc.pid, None)


class _Thread(threading.local):
    fetches: Fetches | None = None


_THREAD = _Thread()


def _kill_group(proc: subprocess.Popen[str]) -> None:
    if proc.returncode is None:  # not reaped yet: its pid still names its group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def cache_lock_path(cache_dir: Path, name: str) -> Path:
    """The lock file of cache entry `name` (a folder or binary rebuilt in place)."""
    return cache_dir / "locks" / f"{name}.lock"


@contextlib.contextmanager
def cache_lock(cache_dir: Path, name: str, service: str, progress: Progress) -> Iterator[None]:
    """Hold the cache's lock on entry `name`: one provisioning of it at a time, whichever
    clone or run folder asks (the cache is shared); a cancelled run stops waiting."""
    path = cache_lock_path(cache_dir, name)
    fetches = _THREAD.fetches

    def waiting() -> None:
        progress.step(service, f"waiting for another provisioning of {name} ({path})")

    try:
        with exclusive(path, waiting, None if fetches is None else fetches.cancelled):
            yield
    except Abandoned:
        raise Cancelled(f"{service}: stopped while waiting for {path}") from None


def build_once(
    binary: Path, cache_dir: Path, service: str, progress: Progress, build: Callable[[], None]
) -> None:
    """`build` the cached `binary` unless it is there, one build of it at a time whichever
    clone sharing the cache asks (its sources and output are shared); one that waited for
    the lock finds it built."""
    if binary.exists():
        return
    with cache_lock(cache_dir, binary.name, service, progress):
        if not binary.exists():
            build()


def run_fetching(
    args: Sequence[str],
    *,
    what: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `args`, at most `timeout` seconds a try, tried ATTEMPTS times; its result.

    A try that ran out of time is not made again: a stalled proxy or a cold build that
    long would cost the same again (twice 30 min for Consul's build, most of CI's 90)."""
    failure = ""
    fetches = _THREAD.fetches
    for attempt in range(1, ATTEMPTS + 1):
        if fetches is not None:
            fetches.check(what)
        # Its own process group: on a timeout the whole tree goes (dpkg under apt-get,
        # the compilers under go), not only the command, so the next try finds no lock.
        with (
            subprocess.Popen(
                list(args),
                env=None if env is None else dict(env),
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            ) as proc,
            contextlib.nullcontext() if fetches is None else fetches.tracking(proc),
        ):
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                proc.communicate()
                raise ServiceError(
                    f"{what}: {' '.join(args)} gave no result within {timeout:g} s "
                    f"(try {attempt}; not tried again)"
                ) from None
            except BaseException:
                _kill_group(proc)  # Ctrl-C here: the command's session does not get it
                raise
            else:
                if proc.returncode == 0:
                    return subprocess.CompletedProcess(proc.args, 0, stdout, stderr)
                failure = f"exit code {proc.returncode}:\n{stdout[-2000:]}{stderr[-3000:]}"
        if fetches is not None:
            fetches.check(what)  # killed by cancel: no second try
        if attempt < ATTEMPTS:
            if fetches is None:
                time.sleep(PAUSE)
            elif fetches.cancelled.wait(PAUSE):
                fetches.check(what)
    raise ServiceError(f"{what}: {' '.join(args)} failed ({ATTEMPTS} tries); {failure}")
