"""infra/local/provisioning.py and the cache's locks: a failed step or Ctrl-C stops the
other steps' downloads and builds at once, every failure is named, and one provisioning
of a cache entry runs at a time whoever else shares the cache."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from infra.local import LocalSettings, consul, ferretdb, kafka, provisioning
from infra.local.downloads import cache_lock_path, run_fetching
from infra.local.process import gone
from infra.local.service import Progress, Service, ServiceError
from tests.support.local_infra import Recorder, scratch_settings
from tests.support.waiting import eventually


class Step(Service):
    """A service whose provisioning is `work`."""

    marker = "never-started"

    def __init__(self, settings: LocalSettings, name: str, work: Callable[[], None]) -> None:
        super().__init__(settings)
        self.name = name
        self.work = work

    def provision(self, progress: Progress) -> None:
        self.work()

    def argv(self) -> list[str]:
        raise AssertionError("never started")

    def probe(self) -> None:
        raise AssertionError("never probed")


@pytest.fixture
def settings(tmp_path: Path) -> LocalSettings:
    return scratch_settings(tmp_path)


def _long_build(tmp_path: Path) -> Callable[[], None]:
    """A download that takes 20 s, then leaves a mark; it writes its pid first."""
    script = f'echo $$ > "{tmp_path / "pid"}"; sleep 20; touch "{tmp_path / "finished"}"'

    def build() -> None:
        run_fetching(["sh", "-c", script], what="build", timeout=60)

    return build


async def test_ctrl_c_stops_the_builds_at_once(
    tmp_path: Path, settings: LocalSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctrl_c = threading.Event()

    def interrupted(*args: object, **kwargs: object) -> object:
        ctrl_c.wait(60)
        raise KeyboardInterrupt  # as Ctrl-C arrives in the wait for the steps

    monkeypatch.setattr(provisioning, "wait", interrupted)
    step = Step(settings, "consul", _long_build(tmp_path))
    with ThreadPoolExecutor(max_workers=1) as pool:
        provisioned = pool.submit(provisioning.provision_all, [step], Recorder())
        try:
            await eventually((tmp_path / "pid").exists, what="the build started")
        finally:
            ctrl_c.set()
        with pytest.raises(KeyboardInterrupt):
            provisioned.result(60)
    assert not (tmp_path / "finished").exists(), "provisioning waited for the build"
    assert gone(int((tmp_path / "pid").read_text()))


def test_every_failing_step_is_named_and_the_rest_are_stopped(
    tmp_path: Path, settings: LocalSettings
) -> None:
    both = threading.Barrier(2, timeout=30)

    def fails(message: str) -> Callable[[], None]:
        def work() -> None:
            both.wait()
            raise ServiceError(message)

        return work

    steps: list[Service] = [
        Step(settings, "mariadb", fails("mariadb-server is not installed")),
        Step(settings, "consul", _long_build(tmp_path)),
        Step(settings, "postgres", fails("postgresql is not installed")),
    ]
    with pytest.raises(ServiceError) as failed:
        provisioning.provision_all(steps, Recorder())
    message = str(failed.value)
    assert "mariadb: mariadb-server is not installed" in message
    assert "postgres: postgresql is not installed" in message
    assert "(stopped before they were done: consul)" in message
    assert not (tmp_path / "finished").exists()


# --- one provisioning of a cache entry at a time --------------------------------------


@pytest.fixture
def holder() -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    """Another process holding a lock file until its stdin closes."""
    procs: list[subprocess.Popen[str]] = []
    script = (
        "import fcntl, sys\n"
        "f = open(sys.argv[1], 'a')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"
    )

    def hold(path: Path) -> subprocess.Popen[str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-c", script, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def _kafka(settings: LocalSettings, built: list[str], mp: pytest.MonkeyPatch) -> Service:
    service = kafka.Kafka(settings)
    mp.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    mp.setattr(kafka, "run_fetching", lambda *a, **k: built.append("mvn"))
    return service


def _ferretdb(settings: LocalSettings, built: list[str], mp: pytest.MonkeyPatch) -> Service:
    mp.setattr(ferretdb, "build_module_copy", lambda *a, **k: built.append("go build"))
    return ferretdb.FerretDB(settings)


def _consul(settings: LocalSettings, built: list[str], mp: pytest.MonkeyPatch) -> Service:
    mp.setattr(consul, "wrapper_module", lambda *a, **k: built.append("go get"))
    return consul.Consul(settings)


def _done_marker(service: Service) -> tuple[str, Path]:
    """(the cache lock's name, the file that says it is provisioned)"""
    if isinstance(service, kafka.Kafka):
        return f"kafka-{service.settings.kafka_version}-{service.libs.name}", service._stamp
    assert isinstance(service, ferretdb.FerretDB | consul.Consul)
    return service.binary.name, service.binary


@pytest.mark.parametrize("make", [_kafka, _ferretdb, _consul])
async def test_provisioning_waits_for_another_process_provisioning_the_same_entry(
    make: Callable[[LocalSettings, list[str], pytest.MonkeyPatch], Service],
    settings: LocalSettings,
    holder: Callable[[Path], subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []
    service = make(settings, built, monkeypatch)
    name, done = _done_marker(service)
    other = holder(cache_lock_path(settings.cache_dir, name))
    progress = Recorder()
    with ThreadPoolExecutor(max_workers=1) as pool:
        provisioned = pool.submit(service.provision, progress)
        try:
            await eventually(
                lambda: any("waiting for another provisioning" in x for x in progress.lines),
                within=15,
                what="it waits for the other provisioning",
            )
            assert built == []
            done.parent.mkdir(parents=True, exist_ok=True)
            done.touch()  # what the other process provisioned
        finally:
            assert other.stdin is not None
            other.stdin.close()  # it lets go of the lock
        provisioned.result(60)
    assert built == []  # it found the other's result and did not do it again
