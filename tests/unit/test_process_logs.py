"""infra/processes/logs.py: the logs of the gateways and workers a run starts go to a
folder of its own, and the folders of older, ended runs beyond the newest few go."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.processes import logs


def _ended_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_older_ended_runs_beyond_the_newest_go_and_running_ones_stay(tmp_path: Path) -> None:
    dead, alive = _ended_pid(), os.getpid()
    names = [
        f"20261201-100000-{dead}-a1",
        f"20261201-110000-{alive}-b2",  # old, but its run still goes
        f"20261202-100000-{dead}-c3",
        "notes",  # no pid in its name: not a run's folder
        f"20261203-100000-{dead}-d4",
        f"20261204-100000-{dead}-e5",
    ]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "gateway-x.log").write_text("a log")
    removed = logs.prune(tmp_path, keep=2)
    assert [p.name for p in removed] == [names[0], names[2]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [names[1], names[3], names[4], names[5]]
    )


def test_a_runs_logs_share_one_folder_in_the_users_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(logs, "_run_folder", logs._run_folder.__wrapped__)
    stale = logs.logs_root() / f"20200101-000000-{_ended_pid()}-zz"
    stale.mkdir(parents=True)
    monkeypatch.setattr(logs, "KEEP", 0)
    first = logs.log_file("gateway")
    assert first.name.startswith("gateway-") and first.suffix == ".log"
    assert first.parent.parent == tmp_path / f"dialogue-platform-logs-{os.getuid()}"
    assert first.read_bytes() == b""
    assert not stale.exists()  # ended, beyond KEEP
    assert first.exists()  # this run's own folder: its pid runs


@pytest.mark.parametrize("made", ["writable by others", "a link", "a file"])
def test_a_logs_root_someone_else_could_change_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, made: str
) -> None:
    """Its name is predictable in the shared temporary folder: another user could make it
    first and then rename or replace the run folders inside."""
    monkeypatch.setattr(logs.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(logs, "_run_folder", logs._run_folder.__wrapped__)
    root = logs.logs_root()
    if made == "writable by others":
        root.mkdir()
        root.chmod(0o777)
    elif made == "a link":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        root.symlink_to(tmp_path / "elsewhere")
    else:
        root.write_text("")
    with pytest.raises((RuntimeError, FileExistsError), match=r"TMPDIR|exists"):
        logs.log_file("gateway")
