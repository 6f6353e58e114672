"""Ctrl-C during a soak (bench/soak/ctrl_c.py, bench/soak/run.py): it says at once what
it does, and during the set-up it skips to the clean-up instead of waiting for the load."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.soak import run
from bench.soak.ctrl_c import CtrlC, Interrupted
from bench.soak.run import FAILED, soak
from bench.soak.settings import from_args
from tests.support.waiting import eventually


async def test_ctrl_c_during_a_set_up_step_cancels_it_and_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctrl_c, started = CtrlC(), asyncio.Event()
    cancelled = False

    async def step() -> None:
        nonlocal cancelled
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled = True
            raise

    waiting = asyncio.create_task(ctrl_c.setting_up(step()))
    await started.wait()
    ctrl_c.press()
    with pytest.raises(Interrupted):
        await waiting
    assert cancelled
    assert "Ctrl-C: stopping the set-up and cleaning up" in capsys.readouterr().err


async def test_a_step_after_ctrl_c_does_not_run() -> None:
    ctrl_c, ran = CtrlC(), []
    ctrl_c.press()

    async def step() -> None:
        ran.append(1)

    with pytest.raises(Interrupted):
        await ctrl_c.setting_up(step())
    assert ran == []


async def test_a_step_without_ctrl_c_gives_its_result_or_its_error() -> None:
    ctrl_c = CtrlC()

    async def answer() -> int:
        return 42

    async def broken() -> None:
        raise OSError("refused")

    assert await ctrl_c.setting_up(answer()) == 42
    with pytest.raises(OSError, match="refused"):
        await ctrl_c.setting_up(broken())


def test_ctrl_c_during_the_load_ends_it_and_the_checks_still_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ctrl_c = CtrlC()
    ctrl_c.phase = "load"
    ctrl_c.press()
    ctrl_c.check()  # no Interrupted: the load ends early, the checks run
    assert ctrl_c.pressed.is_set()
    assert "ending the load after one more sample" in capsys.readouterr().err


async def test_the_first_sigint_presses_and_the_second_is_python_s_again() -> None:
    ctrl_c = CtrlC()
    ctrl_c.install()
    try:
        signal.raise_signal(signal.SIGINT)
        await eventually(ctrl_c.pressed.is_set, what="the first Ctrl-C")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)


async def test_a_soak_interrupted_in_its_set_up_cleans_up_and_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[CtrlC] = []
    preparing, platform = asyncio.Event(), {"up": False}
    monkeypatch.setattr(CtrlC, "install", lambda self: made.append(self))

    @contextlib.asynccontextmanager
    async def target(*_: Any) -> AsyncIterator[Any]:
        platform["up"] = True
        try:
            local = SimpleNamespace(kafka_bootstrap="")
            yield SimpleNamespace(api_url="", dev=SimpleNamespace(local=local, topic=""))
        finally:
            platform["up"] = False

    async def prepare(*_: Any) -> None:
        preparing.set()
        await asyncio.Event().wait()  # signing up hundreds of users

    monkeypatch.setattr(run, "target", target)
    monkeypatch.setattr(run, "prepare", prepare)
    settings = from_args(["--out", str(tmp_path)], {})

    running = asyncio.create_task(soak(settings))
    await preparing.wait()
    made[0].press()

    assert await running == FAILED
    assert platform["up"] is False
    assert "soak interrupted (Ctrl-C) before the load started" in capsys.readouterr().err
