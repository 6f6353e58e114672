"""infra/local/downloads.py: a registry command gets a time limit and a second try."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.local import downloads
from infra.local.downloads import run_fetching
from infra.local.process import gone
from infra.local.service import ServiceError
from tests.support.waiting import eventually


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(downloads, "PAUSE", 0.0)


def test_a_command_that_fails_once_is_tried_again(tmp_path: Path) -> None:
    tried = tmp_path / "tried"
    script = (
        f'if [ -e "{tried}" ]; then echo fetched; '
        f'else touch "{tried}"; echo "connection reset by peer" >&2; exit 1; fi'
    )
    assert run_fetching(["sh", "-c", script], what="jars", timeout=30).stdout == "fetched\n"


def test_a_command_that_hangs_is_stopped_named_and_not_tried_again(tmp_path: Path) -> None:
    """A try that ran out of time would cost as much again (twice 30 min for a build)."""
    tries = tmp_path / "tries"
    script = f'echo x >> "{tries}"; exec tail -f /dev/null'
    with pytest.raises(ServiceError, match=r"mirror: sh -c .* no result within 2 s \(try 1;"):
        run_fetching(["sh", "-c", script], what="mirror", timeout=2)
    assert tries.read_text() == "x\n"


def test_a_command_that_keeps_failing_ends_with_its_output() -> None:
    with pytest.raises(ServiceError, match=r"2 tries\); exit code 3:\nno such package"):
        run_fetching(["sh", "-c", "echo no such package >&2; exit 3"], what="apt", timeout=30)


async def test_a_command_that_hangs_is_stopped_with_what_it_started(tmp_path: Path) -> None:
    """apt-get leaves dpkg behind, go its compilers: the whole process group goes."""
    started = tmp_path / "children"
    script = f'tail -f /dev/null & echo $! >> "{started}"; wait'
    with pytest.raises(ServiceError, match=r"within 2 s"):
        run_fetching(["sh", "-c", script], what="tree", timeout=2)
    children = [int(pid) for pid in started.read_text().split()]
    assert children, "no try got as far as starting its child"
    # SIGKILL lands asynchronously: the orphan may run a moment after its shell is reaped.
    await eventually(lambda: all(gone(pid) for pid in children), what="the orphans died")
