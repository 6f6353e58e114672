"""Start, find and stop one long-running local process through its pid file."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from signal import Signals

#: A log past this size when its process starts is kept as `<name>.log.1` (replacing the
#: one before) and a new one begun: logs are appended to across restarts, and a machine
#: that keeps its run folder for months otherwise grows them without end.
LOG_ROTATE_AT = 64 * 1024 * 1024

# Processes this interpreter started, kept so they can be reaped (no zombies, and no
# ResourceWarning from a Popen object dropped while its process still runs).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ProcessError(RuntimeError):
    """A local service process could not be started or stopped."""


def _cmdline(pid: int) -> str:
    # A process that is starting up (Go runtimes, seen with FerretDB) can briefly
    # show an empty cmdline; ask again for a moment before concluding anything.
    for _ in range(50):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return ""
        if raw:
            return raw.replace(b"\0", b" ").decode(errors="replace")
        time.sleep(0.01)
    return ""


def rotate(log_file: Path, limit: int = LOG_ROTATE_AT) -> None:
    """Keep `log_file` as `<name>.1` when it has grown past `limit` bytes."""
    try:
        if log_file.stat().st_size > limit:
            log_file.replace(log_file.with_name(f"{log_file.name}.1"))
    except FileNotFoundError:
        pass


def start_time(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat field 22).

    With the pid it names one process for as long as the machine runs: a recycled pid
    gets a later start time. None when there is no such process.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (the command name, in parentheses) may hold spaces and ")": split after it.
    fields = stat.rsplit(")", 1)[1].split()
    try:
        return int(fields[22 - 3])
    except (IndexError, ValueError):
        return None


class ManagedProcess:
    """One process we started, remembered by a pid file next to its log.

    The pid file holds the pid and the process's start time, so a pid recycled by an
    unrelated process is never mistaken for ours (and never signalled). A pid file
    written before start times were kept holds the pid alone; for it, a marker from
    the command line stands in (weaker: other processes may show the same string).
    """

    def __init__(self, name: str, run_dir: Path, marker: str) -> None:
        self.name = name
        self.marker = marker
        self.pid_file = run_dir / f"{name}.pid"
        self.log_file = run_dir / f"{name}.log"

    def pid(self) -> int | None:
        """The pid of our running process, or None."""
        _reap_exited()
        try:
            fields = [int(field) for field in self.pid_file.read_text().split()]
        except (OSError, ValueError):
            return None
        if len(fields) == 2:
            pid, started = fields
            # A zombie keeps its start time: dead, its parent not having reaped it yet.
            if pid <= 0 or start_time(pid) != started or gone(pid):
                return None
        elif len(fields) == 1 and fields[0] > 0:
            pid = fields[0]
            if self.marker not in _cmdline(pid):
                return None
        else:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def start(self, argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> int:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        rotate(self.log_file)
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: a Ctrl-C here does not stop it
            )
        _CHILDREN[proc.pid] = proc
        try:
            started = start_time(proc.pid)  # read before anything can reap it
            record = f"{proc.pid}" if started is None else f"{proc.pid} {started}"
            tmp = self.pid_file.with_name(f"{self.pid_file.name}.tmp")
            tmp.write_text(f"{record}\n")
            tmp.replace(self.pid_file)
        except BaseException:
            # Unrecorded, nothing could stop it later: it goes now (Ctrl-C included).
            proc.kill()
            proc.wait()
            _CHILDREN.pop(proc.pid, None)
            raise
        return proc.pid

    def signal(self, sig: signal.Signals) -> bool:
        """Send a signal to our process; False when it is not running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, sig)
        return True

    def stop(self, timeout: float = 20.0, sig: Signals = Signals.SIGTERM) -> bool:
        """`sig` (SIGTERM), then SIGKILL after timeout; True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            os.kill(pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            os.kill(pid, sig)
        except ProcessLookupError:  # it ended between the look-up and the signal
            self._wait_gone(pid, 5.0)  # reaped, when it is our child
            self.pid_file.unlink(missing_ok=True)
            return True
        if not self._wait_gone(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            if not self._wait_gone(pid, 5.0):
                raise ProcessError(f"{self.name} (pid {pid}) survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> bool:
        """SIGKILL, as a crash would; True if something was killed."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        self._wait_gone(pid, 5.0)
        return True

    @staticmethod
    def _wait_gone(pid: int, timeout: float) -> bool:
        child = _CHILDREN.get(pid)
        if child is not None:
            # Our child: wait() reaps it. /proc is no guide here: a killed multi-threaded
            # process (Kafka's JVM, FerretDB, Consul) shows "Z" for its main thread while
            # the other threads still exit, and cannot be reaped until they are gone.
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            _CHILDREN.pop(pid, None)
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if gone(pid):
                return True
            time.sleep(0.05)
        return False


def _reap_exited() -> None:
    """Collect the exit status of the children that ended on their own (a crash)."""
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)


def gone(pid: int) -> bool:
    """Whether process `pid` ended: no such process, or a dead one (a zombie, waiting for
    whichever process adopted it to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
