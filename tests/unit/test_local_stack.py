"""infra/local/stack.py with stand-in services (sleeping Python processes in a temporary
run folder): one command at a time, nothing left running after a failure or Ctrl-C,
running services waited for, and `python -m infra.local` reading its arguments."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from infra.local import LocalSettings
from infra.local import __main__ as cli
from infra.local.process import ManagedProcess, ProcessError, gone
from infra.local.service import Progress, Service
from infra.local.stack import Stack
from tests.support.local_infra import SLEEPER, Recorder, scratch_settings
from tests.support.waiting import eventually


class Standin(Service):
    """A sleeping process; it answers once it runs and has been probed `answers_after` times."""

    ready_timeout = 30.0

    def __init__(
        self,
        settings: LocalSettings,
        name: str,
        events: list[str],
        requires: tuple[str, ...] = (),
        answers_after: int = 0,
    ) -> None:
        super().__init__(settings)
        self.name = name
        self.marker = f"standin-{name}"
        self.requires = requires
        self.events = events
        self.answers_after = answers_after
        self.probes = 0
        self.on_provision: Callable[[], None] = lambda: None
        self.on_prepare: Callable[[], None] = lambda: None

    def provision(self, progress: Progress) -> None:
        self.events.append(f"provision {self.name}")
        self.on_provision()

    def prepare(self, progress: Progress) -> None:
        self.events.append(f"prepare {self.name}")
        self.on_prepare()

    def argv(self) -> list[str]:
        return [sys.executable, "-c", SLEEPER, self.marker]

    def probe(self) -> None:
        if ManagedProcess(self.name, self.run_dir, self.marker).pid() is None:
            raise ConnectionRefusedError(self.name)
        self.probes += 1
        if self.probes <= self.answers_after:
            raise ConnectionRefusedError(f"{self.name} is starting")

    def after_ready(self, progress: Progress) -> None:
        self.events.append(f"after_ready {self.name}")


@pytest.fixture
def settings(tmp_path: Path) -> LocalSettings:
    return scratch_settings(tmp_path)


@pytest.fixture
def stacks(settings: LocalSettings) -> Iterator[list[Stack]]:
    """Stacks a test makes; whatever they left running is stopped after it."""
    made: list[Stack] = []
    yield made
    for stack in made:
        for name in stack.services:
            stack.process(name).kill()


def _stack(
    stacks: list[Stack], settings: LocalSettings, *services: Standin, progress: Recorder
) -> Stack:
    stack = Stack(settings, progress, services)
    stacks.append(stack)
    return stack


async def test_a_second_up_waits_for_the_first_and_starts_nothing_twice(
    settings: LocalSettings, stacks: list[Stack]
) -> None:
    first_events: list[str] = []
    first_service = Standin(settings, "svc", first_events)
    entered, release = threading.Event(), threading.Event()

    def held() -> None:
        entered.set()
        release.wait(60)

    first_service.on_provision = held
    first = _stack(stacks, settings, first_service, progress=Recorder())
    second_progress = Recorder()
    second_events: list[str] = []
    second = _stack(
        stacks, settings, Standin(settings, "svc", second_events), progress=second_progress
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        first_up = pool.submit(first.up)
        await eventually(entered.is_set, what="the first up provisions")
        second_up = pool.submit(second.up)
        try:
            await eventually(
                lambda: any("waiting for another infra" in x for x in second_progress.lines),
                within=15,
                what="the second up says it waits",
            )
        finally:
            release.set()
        assert first_up.result(60) == ["svc"]
        assert second_up.result(60) == []
    assert second_events == ["after_ready svc"]  # it found it running: no provision, no start
    assert first.process("svc").pid() is not None


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), RuntimeError("a bug in prepare")])
def test_an_interrupted_up_stops_what_it_started(
    interrupt: BaseException, settings: LocalSettings, stacks: list[Stack]
) -> None:
    events: list[str] = []
    first, second = Standin(settings, "a", events), Standin(settings, "b", events)

    def fail() -> None:
        raise interrupt

    second.on_prepare = fail
    progress = Recorder()
    stack = _stack(stacks, settings, first, second, progress=progress)
    with pytest.raises(type(interrupt)):
        stack.up()
    [pid] = progress.pids()
    assert gone(pid), "a was left running"
    assert stack.process("a").pid() is None and stack.started == []


def test_what_an_interrupted_up_could_not_stop_stays_recorded(
    settings: LocalSettings, stacks: list[Stack], monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    first, second = Standin(settings, "a", events), Standin(settings, "b", events)

    def interrupt() -> None:
        raise KeyboardInterrupt

    def stuck(self: ManagedProcess, *args: object, **kwargs: object) -> bool:
        raise ProcessError(f"{self.name} survived SIGKILL")

    second.on_prepare = interrupt
    stack = _stack(stacks, settings, first, second, progress=Recorder())
    monkeypatch.setattr(ManagedProcess, "stop", stuck)
    with pytest.raises(KeyboardInterrupt) as raised:
        stack.up()
    assert stack.started == ["a"]
    assert any("a survived SIGKILL" in note for note in raised.value.__notes__)


def test_up_waits_for_a_running_service_that_does_not_answer_yet(
    settings: LocalSettings, stacks: list[Stack]
) -> None:
    events: list[str] = []
    service = Standin(settings, "a", events, answers_after=3)
    stack = _stack(stacks, settings, service, progress=Recorder())
    stack.process("a").start(service.argv(), cwd=settings.run_dir)  # a start of an earlier up
    assert stack.up() == []
    assert service.probes == 4
    assert events == ["after_ready a"]


def test_a_service_starts_once_a_running_requirement_answers(
    settings: LocalSettings, stacks: list[Stack]
) -> None:
    events: list[str] = []
    required = Standin(settings, "a", events, answers_after=3)
    dependent = Standin(settings, "b", events, requires=("a",))
    stack = _stack(stacks, settings, required, dependent, progress=Recorder())
    stack.process("a").start(required.argv(), cwd=settings.run_dir)
    assert stack.up(["b"]) == ["b"]
    assert events == ["provision b", "after_ready a", "prepare b", "after_ready b"]


# --- python -m infra.local ------------------------------------------------------------


@pytest.fixture
def cli_stack(
    settings: LocalSettings, stacks: list[Stack], monkeypatch: pytest.MonkeyPatch
) -> Stack:
    events: list[str] = []
    stack = _stack(
        stacks,
        settings,
        Standin(settings, "a", events),
        Standin(settings, "b", events),
        progress=Recorder(),
    )
    monkeypatch.setattr(cli, "Stack", lambda: stack)
    return stack


def test_status_shows_the_services_named(
    cli_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_stack.up(["b"])
    assert cli.main(["status", "b"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("b ") and "ready" in line
    assert cli.main(["status"]) == 3  # a is not running


@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_an_unknown_service_name_is_refused_readably(
    command: str, cli_stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.main([command, "b", "kafak"])
    assert refused.value.code == 2
    assert "unknown service(s): kafak; known: a, b" in capsys.readouterr().err  # (down: + kafka)
    assert cli_stack.process("b").pid() is None


def test_down_stops_the_others_when_one_cannot_be_stopped(
    cli_stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_stack.up()
    stop = ManagedProcess.stop

    def stop_but_b(self: ManagedProcess, *args: object, **kwargs: object) -> bool:
        if self.name == "b":  # stopped first (reverse order)
            raise ProcessError("b (pid 7) survived SIGKILL")
        return stop(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ManagedProcess, "stop", stop_but_b)
    assert cli.main(["down"]) == 1
    assert cli_stack.process("a").pid() is None
    err = capsys.readouterr().err
    assert "infra down failed: could not stop b (ProcessError: b (pid 7) survived SIGKILL)" in err
    assert "stopped: a" in err and "Traceback" not in err


def test_ctrl_c_during_up_exits_130_with_one_line(
    cli_stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def up(names: object = None) -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_stack, "up", up)
    try:
        code = cli.main(["up"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C ended `python -m infra.local up` with a traceback")
    assert code == 130
    assert capsys.readouterr().err.strip().splitlines() == ["infra up interrupted"]
