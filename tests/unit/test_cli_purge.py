"""`python -m infra.local purge` (`make clean`): stop every service, then remove the run
folder and PostgreSQL's fallback folder in /var/tmp when the cluster went there (as root,
with the clone out of the postgres user's reach). `rm -rf .run` left that folder behind:
FerretDB kept the old chats while MariaDB's user ids started again at 1, so the next
user 1 saw the chats of the old one. Nothing else is ever removed.

Services are the real ones in a scratch folder, with nothing running (or a stand-in
process under one's pid file); /var/tmp, the repository and home are scratch folders."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local import __main__ as cli
from infra.local import settings as local_settings
from infra.local import stack as stack_module
from infra.local.kafka import CLUSTER_ID_FILE
from infra.local.process import ManagedProcess, ProcessError, gone
from infra.local.settings import LocalSettings, postgres_fallback_dir
from infra.local.stack import LOCK_FILE, Stack, StopError
from tests.support.local_infra import SLEEPER, Recorder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """/var/tmp, the repository and home moved into `tmp_path`."""
    monkeypatch.setattr(local_settings, "SHARED_TMP", tmp_path / "var-tmp")
    monkeypatch.setattr(stack_module, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setattr(stack_module, "DEFAULT_RUN_DIR", tmp_path / "repo" / ".run")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for folder in ("var-tmp", "repo", "home", "cache"):
        (tmp_path / folder).mkdir()
    return tmp_path


def _settings(scratch: Path, run: Path, postgres: Path | None = None) -> LocalSettings:
    """Settings on `run`; PostgreSQL in `postgres`, by default the run folder's fallback
    (where root puts it when the postgres user cannot reach the run folder)."""
    fallback = postgres_fallback_dir(run.resolve())
    return LocalSettings.from_env(
        {
            "LOCAL_RUN_DIR": str(run),
            "LOCAL_CACHE_DIR": str(scratch / "cache"),
            "LOCAL_POSTGRES_RUN_DIR": str(postgres or fallback),
        }
    )


def _used(folder: Path) -> Path:
    """A folder as infra.local leaves it: its lock file and a service's data and log."""
    (folder / "mariadb").mkdir(parents=True)
    (folder / "mariadb" / "file").write_text("kept until purged")
    (folder / "mariadb.log").write_text("a log")
    (folder / LOCK_FILE).touch()
    return folder


@pytest.fixture
def stacks() -> Iterator[list[Stack]]:
    made: list[Stack] = []
    yield made
    for stack in made:
        for name in stack.services:
            stack.process(name).kill()


def _stack(stacks: list[Stack], settings: LocalSettings) -> Stack:
    stack = Stack(settings, Recorder())
    stacks.append(stack)
    return stack


def test_purge_removes_the_run_folder_and_postgresqls_fallback_only(
    scratch: Path, stacks: list[Stack]
) -> None:
    run = _used(scratch / "run")
    settings = _settings(scratch, run)
    fallback = _used(settings.postgres_run_dir)
    assert fallback == postgres_fallback_dir(run) and fallback.parent == scratch / "var-tmp"
    neighbour = _used(scratch / "var-tmp" / "dialogue-platform-0000beef")  # another clone's
    (scratch / "cache" / "consul").write_text("a build")

    stopped, removed = _stack(stacks, settings).purge()

    assert (stopped, removed) == ([], [run, fallback])
    assert not run.exists() and not fallback.exists()
    assert (neighbour / "mariadb" / "file").exists() and (scratch / "cache" / "consul").exists()


def test_purge_stops_what_runs_before_it_removes_its_folder(
    scratch: Path, stacks: list[Stack]
) -> None:
    run = _used(scratch / "run")
    stack = _stack(stacks, _settings(scratch, run))
    pid = stack.process("consul").start([sys.executable, "-c", SLEEPER, "consul"], cwd=run)
    assert stack.purge()[0] == ["consul"]
    assert gone(pid) and not run.exists()


def test_nothing_is_removed_when_a_service_cannot_be_stopped(
    scratch: Path, stacks: list[Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its pid file is what stops it later."""
    run = _used(scratch / "run")
    stack = _stack(stacks, _settings(scratch, run))
    stack.process("consul").start([sys.executable, "-c", SLEEPER, "consul"], cwd=run)

    def stuck(self: ManagedProcess, *args: object, **kwargs: object) -> bool:
        raise ProcessError(f"{self.name} survived SIGKILL")

    monkeypatch.setattr(ManagedProcess, "stop", stuck)
    with pytest.raises(StopError):
        stack.purge()
    assert (run / "consul.pid").exists() and (run / "mariadb" / "file").exists()


def test_a_postgresql_folder_set_elsewhere_is_kept(scratch: Path, stacks: list[Stack]) -> None:
    """LOCAL_POSTGRES_RUN_DIR may be a folder several copies share."""
    run = _used(scratch / "run")
    shared = _used(scratch / "shared-postgres")
    assert _stack(stacks, _settings(scratch, run, postgres=shared)).purge()[1] == [run]
    assert (shared / "mariadb" / "file").exists()


@pytest.mark.parametrize("run", [".", "home", "repo/..", "repo", "cache", "home/.."])
def test_a_run_folder_holding_what_must_stay_is_refused(
    scratch: Path, stacks: list[Stack], run: str
) -> None:
    (scratch / LOCK_FILE).touch()
    stack = _stack(stacks, _settings(scratch, scratch / run))
    with pytest.raises(stack_module.ServiceError, match="refusing to remove the run folder"):
        stack.purge()
    assert {p.name for p in scratch.iterdir()} >= {"var-tmp", "repo", "home", "cache"}


def test_a_folder_no_infra_command_used_is_refused(scratch: Path, stacks: list[Stack]) -> None:
    mine = scratch / "my-files"
    (mine / "notes").mkdir(parents=True)
    stack = _stack(stacks, _settings(scratch, mine))
    with pytest.raises(stack_module.ServiceError, match=f"it holds no {LOCK_FILE}"):
        stack.purge()
    assert [p.name for p in mine.iterdir()] == ["notes"]  # nothing made there either


def test_a_run_folder_set_elsewhere_keeps_what_infra_did_not_make(
    scratch: Path, stacks: list[Stack]
) -> None:
    """LOCAL_RUN_DIR=/srv/data: only the services' files go, and the folder if empty."""
    shared = _used(scratch / "shared")
    (shared / "my-notes").mkdir()
    (shared / "kafka-2.pid").write_text("123")
    (shared / "kafka.log.1").write_text("a rotated log")
    (shared / "dev").mkdir()
    _stack(stacks, _settings(scratch, shared)).purge()
    assert [p.name for p in shared.iterdir()] == ["my-notes"]


def test_a_run_folder_set_elsewhere_goes_after_a_three_node_kafka(
    scratch: Path, stacks: list[Stack]
) -> None:
    """The nodes' shared cluster id file stayed, so the folder was never removed
    (found in review)."""
    run = _used(scratch / "three-nodes")
    (run / CLUSTER_ID_FILE).write_text("MkU3OEVBNTcwNTJENDM2Qk")
    assert run in _stack(stacks, _settings(scratch, run)).purge()[1]
    assert not run.exists()


def test_the_default_run_folder_goes_whatever_it_holds(scratch: Path, stacks: list[Stack]) -> None:
    """What `rm -rf .run` removed, `make clean` still removes."""
    run = scratch / "repo" / ".run"
    (run / "dev").mkdir(parents=True)
    assert _stack(stacks, _settings(scratch, run)).purge()[1][0] == run
    assert not run.exists()


def test_python_m_infra_local_purge(
    scratch: Path,
    stacks: list[Stack],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _used(scratch / "run")
    stack = _stack(stacks, _settings(scratch, run))
    monkeypatch.setattr(cli, "Stack", lambda: stack)
    with pytest.raises(SystemExit) as refused:
        cli.main(["purge", "kafka"])
    assert refused.value.code == 2 and "purge takes no service names" in capsys.readouterr().err
    assert cli.main(["purge"]) == 0
    out = capsys.readouterr().out
    assert "stopped: nothing was running" in out
    assert f"removed: {run}, {postgres_fallback_dir(run)}" in out
    refusing = _stack(stacks, _settings(scratch, scratch / "home"))
    monkeypatch.setattr(cli, "Stack", lambda: refusing)
    assert cli.main(["purge"]) == 1
    assert capsys.readouterr().err.startswith("infra purge failed: refusing to remove")


def test_make_clean_purges_after_make_dev_down() -> None:
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^clean:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None
    lines = recipe.group(1).splitlines()
    # dev-down first; then, with no .venv and pid files left, .venv made again; then purge.
    assert "dev-down" in lines[0] and "VENV_FOR_PIDS" in lines[1]
    assert "-m infra.local purge" in lines[2]
    assert "rm -rf .run" not in recipe.group(1).split("else")[0]
