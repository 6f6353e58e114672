"""infra/local/process.py: a pid file names one process (pid and start time), never a
look-alike that took over its pid."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.local.process import ManagedProcess, rotate, start_time
from tests.support.local_infra import SLEEPER


@pytest.fixture
def lookalike() -> Iterator[subprocess.Popen[bytes]]:
    """A process whose command line holds "postgres", as a psql or a backend's does."""
    proc = subprocess.Popen([sys.executable, "-c", SLEEPER, "dbname=postgres"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_recycled_pid_with_the_marker_in_its_command_line_is_not_ours(
    tmp_path: Path, lookalike: subprocess.Popen[bytes]
) -> None:
    started = start_time(lookalike.pid)
    assert started is not None
    ours = ManagedProcess("postgres", tmp_path, "postgres")
    ours.pid_file.write_text(f"{lookalike.pid} {started - 1}\n")  # ours started earlier
    assert ours.pid() is None
    assert ours.stop(timeout=1) is False and lookalike.poll() is None  # never signalled
    ours.pid_file.write_text(f"{lookalike.pid} {started}\n")
    assert ours.pid() == lookalike.pid


def test_a_pid_file_without_a_start_time_is_still_read(
    tmp_path: Path, lookalike: subprocess.Popen[bytes]
) -> None:
    """Written before start times were kept: the command line marker decides, as before."""
    (tmp_path / "postgres.pid").write_text(f"{lookalike.pid}\n")
    assert ManagedProcess("postgres", tmp_path, "postgres").pid() == lookalike.pid
    assert ManagedProcess("postgres", tmp_path, "mariadbd").pid() is None


def test_start_records_the_pid_and_the_start_time(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", tmp_path, "sleeper")
    pid = proc.start([sys.executable, "-c", SLEEPER], cwd=tmp_path)
    try:
        assert proc.pid_file.read_text().split() == [str(pid), str(start_time(pid))]
        assert proc.pid() == pid
    finally:
        assert proc.stop(timeout=10)
    assert proc.pid() is None and not proc.pid_file.exists()


def test_a_log_past_its_limit_is_kept_as_dot_1_and_begun_anew_at_start(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    log.write_bytes(b"old\n")
    (tmp_path / "kafka.log.1").write_bytes(b"older\n")
    rotate(log, limit=4)  # at the limit: kept
    assert log.read_bytes() == b"old\n"
    log.write_bytes(b"old, longer\n")
    rotate(log, limit=4)
    assert not log.exists() and (tmp_path / "kafka.log.1").read_bytes() == b"old, longer\n"
    rotate(log, limit=4)  # no log yet: nothing to do
    proc = ManagedProcess("sleeper", tmp_path, "sleeper")
    proc.log_file.touch()
    os.truncate(proc.log_file, 64 * 1024 * 1024 + 1)  # sparse: nothing written
    proc.start([sys.executable, "-c", SLEEPER], cwd=tmp_path)
    try:
        assert proc.log_file.stat().st_size < 1024
        assert (tmp_path / "sleeper.log.1").stat().st_size == 64 * 1024 * 1024 + 1
    finally:
        assert proc.stop(timeout=10)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet="0123456789 \n-x", max_size=30))
def test_any_pid_file_reads_as_none_or_as_a_process_with_that_start_time(
    tmp_path: Path, text: str
) -> None:
    proc = ManagedProcess("p", tmp_path, f"marker-{uuid.uuid4().hex}")
    proc.pid_file.write_text(text)
    pid = proc.pid()
    if pid is not None:
        fields = text.split()
        assert len(fields) == 2 and int(fields[0]) == pid
        assert start_time(pid) == int(fields[1])


def test_a_dead_process_its_parent_has_not_reaped_is_not_running(tmp_path: Path) -> None:
    """A zombie keeps its pid and start time; `up` took it for a running service and
    waited its whole ready timeout instead of starting it again."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])  # not waited for: a zombie
    started = start_time(child.pid)
    try:
        eventually_zombie = Path(f"/proc/{child.pid}/stat")
        for _ in range(1000):  # it ends at once; its exit is not collected until wait()
            if eventually_zombie.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
            subprocess.run(["true"], check=True)  # lets the child run to its end
        ours = ManagedProcess("sleeper", tmp_path, "sleeper")
        ours.pid_file.write_text(f"{child.pid} {started}\n")
        assert ours.pid() is None
    finally:
        child.wait()


def test_a_process_that_ends_just_before_its_stop_signal_counts_as_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make dev-down` failed with ProcessLookupError (and a hint that make dev was not
    running) when a worker exited between the pid file's look-up and the signal."""
    # A pid no process can have (above the kernel's largest): never someone else's.
    ended = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    ours = ManagedProcess("worker-1", tmp_path, "dialogue_worker")
    ours.pid_file.write_text(f"{ended} 1\n")
    monkeypatch.setattr(ours, "pid", lambda: ended)  # as the look-up saw it, alive
    assert ours.stop(timeout=1) is True
    assert not ours.pid_file.exists()
