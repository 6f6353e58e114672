"""The test suite's one wait: its bound holds even when a single probe hangs."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import waiting
from tests.support.waiting import NeverHappened, eventually


async def test_a_probe_that_never_returns_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "PROBE_GRACE", 0.05)
    never = asyncio.Event()

    async def hangs() -> bool:
        await never.wait()
        return True

    with pytest.raises(NeverHappened, match="probe still running"):
        await eventually(hangs, within=0.05)


async def test_a_timeout_the_probe_raises_itself_is_not_yet() -> None:
    calls = 0

    async def times_out_twice() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TimeoutError("the service did not answer")
        return calls

    assert await eventually(times_out_twice, every=0) == 3


async def test_a_slow_probe_within_the_bound_is_waited_for() -> None:
    answered = asyncio.Event()

    async def answers_later() -> str:
        asyncio.get_running_loop().call_soon(answered.set)
        await answered.wait()
        return "done"

    assert await eventually(answers_later, within=0) == "done"
