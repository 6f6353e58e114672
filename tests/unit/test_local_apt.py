"""apt-get runs one at a time across processes: two clones provisioning at once failed at
`apt-get update`, whose lock apt does not wait for (the lock was a thread lock)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from infra.local import apt


class Steps:
    def __init__(self) -> None:
        self.said: list[str] = []
        self.waiting = threading.Event()

    def step(self, service: str, message: str) -> None:
        self.said.append(message)
        if message == "waiting for another apt-get run":
            self.waiting.set()


def test_an_install_waits_for_an_apt_run_of_another_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = tmp_path / "apt.lock"
    monkeypatch.setattr(apt, "APT_LOCK", lock)
    monkeypatch.setattr(apt.os, "geteuid", lambda: 0)
    ran: list[list[str]] = []
    monkeypatch.setattr(apt, "run_fetching", lambda args, **_: ran.append(list(args)))
    holder = subprocess.Popen(  # another process, holding the lock until told to go
        [
            sys.executable,
            "-c",
            "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX);"
            " print('held', flush=True); sys.stdin.read()",
            str(lock),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        steps = Steps()
        install = threading.Thread(target=apt.apt_install, args=("mariadb", "pkg", steps))
        install.start()
        assert steps.waiting.wait(30)
        assert ran == []  # nothing run while the other process holds it
        holder.communicate()  # its stdin closed: the other process ends, its lock with it
        install.join(30)
        assert not install.is_alive()
        assert [args[:2] for args in ran][-2:] == [["apt-get", "update"], ["apt-get", "install"]]
    finally:
        holder.kill()
        holder.communicate()  # closes its pipes
