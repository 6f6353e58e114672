"""Registrar's heartbeat against a hand-written Consul agent: how long a probe may take,
and that the check is kept alive meanwhile (no Consul, real but short intervals)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

import discovery.registry
from discovery import HealthReport, Registrar, Registration
from tests.support.waiting import eventually

REG = Registration("w-1", "10.0.0.1", 8100, "1.0")
STARTING = HealthReport.critical("starting: first check pending")
# A TTL of three intervals, as by default; the probe is allowed far longer than the TTL.
TTL, INTERVAL = 0.3, 0.1


class FakeAgent:
    """The calls of py-consul's asyncio client the Registrar makes, recorded.

    `updates` holds every TTL update Consul took; `fail_next` makes that many updates
    fail as an unreachable agent's would.
    """

    def __init__(self) -> None:
        self.updates: list[HealthReport] = []
        self.attempts = 0
        self.fail_next = 0

        async def checks() -> dict[str, Any]:
            return {}

        async def register(*args: Any, **kwargs: Any) -> bool:
            return True

        self.agent = SimpleNamespace(
            checks=checks,
            service=SimpleNamespace(register=register, deregister=register),
            check=SimpleNamespace(
                ttl_pass=self._update("passing"),
                ttl_warn=self._update("warning"),
                ttl_fail=self._update("critical"),
            ),
        )

    def _update(self, status: str) -> Callable[[str, str | None], Awaitable[bool]]:
        async def update(check_id: str, notes: str | None = None) -> bool:
            self.attempts += 1
            if self.fail_next:
                self.fail_next -= 1
                raise aiohttp.ClientConnectionError("connection reset by the agent")
            self.updates.append(HealthReport(status, notes or ""))  # type: ignore[arg-type]
            return True

        return update

    async def close(self) -> None:
        pass


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> FakeAgent:
    fake = FakeAgent()
    monkeypatch.setattr(discovery.registry, "open_consul", lambda url, token=None: fake)
    return fake


def test_the_probe_gets_its_own_bound_when_it_is_longer_than_the_interval() -> None:
    assert Registrar("http://consul", REG, _never, ttl=3.0).probe_timeout == 1.0
    assert Registrar("http://consul", REG, _never, ttl=3.0, probe_timeout=3.5).probe_timeout == 3.5
    assert Registrar("http://consul", REG, _never, ttl=9.0, probe_timeout=2.0).probe_timeout == 3.0
    with pytest.raises(ValueError, match="probe_timeout"):
        Registrar("http://consul", REG, _never, ttl=3.0, probe_timeout=0)


async def test_a_probe_slower_than_the_ttl_but_within_its_bound_is_waited_for(
    agent: FakeAgent,
) -> None:
    """TTL 3 s and a MongoDB ping of 1.5 s used to be cut at the interval (1 s) and
    reported as "health probe gave no answer within 1s": a fine worker left the set.
    This probe answers only once the check was kept alive three times, past one TTL."""

    async def slow_but_fine() -> HealthReport:
        seen = agent.attempts
        await eventually(lambda: agent.attempts >= seen + 3, what="three keep-alives")
        return HealthReport.passing("slow but fine")

    registrar = Registrar(
        "http://consul", REG, slow_but_fine, ttl=TTL, interval=INTERVAL, probe_timeout=30.0
    )
    await registrar.start()
    try:
        assert registrar.last_report == HealthReport.passing("slow but fine")
        *kept_alive, answer = agent.updates
        assert answer == HealthReport.passing("slow but fine")
        # The claim, then the same report again while the probe ran: never lapsed, and
        # nothing else said for the probe before it answered.
        assert len(kept_alive) >= 4 and set(kept_alive) == {STARTING}
    finally:
        await registrar.stop()


async def test_keep_alives_resend_the_last_report_and_survive_a_failed_one(
    agent: FakeAgent,
) -> None:
    calls = 0

    async def warning_then_slow() -> HealthReport:
        nonlocal calls
        calls += 1
        if calls == 1:
            return HealthReport.warning("partition stuck")
        seen = agent.attempts
        agent.fail_next = 1  # the first keep-alive does not reach the agent
        await eventually(lambda: agent.attempts >= seen + 3, what="three keep-alives")
        return HealthReport.passing()

    registrar = Registrar(
        "http://consul", REG, warning_then_slow, ttl=TTL, interval=INTERVAL, probe_timeout=30.0
    )
    await registrar.start()
    try:
        assert registrar.last_report == HealthReport.warning("partition stuck")
        await eventually(lambda: registrar.last_report == HealthReport.passing(), what="passing")
        after = agent.updates[agent.updates.index(HealthReport.warning("partition stuck")) :]
        *kept_alive, answer = after[: after.index(HealthReport.passing()) + 1]
        assert answer == HealthReport.passing()
        assert len(kept_alive) >= 3 and set(kept_alive) == {HealthReport.warning("partition stuck")}
    finally:
        await registrar.stop()


async def test_a_probe_past_its_bound_is_critical_and_cancelled(agent: FakeAgent) -> None:
    cancelled = asyncio.Event()

    async def hangs() -> HealthReport:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    registrar = Registrar(
        "http://consul", REG, hangs, ttl=TTL, interval=INTERVAL, probe_timeout=0.25
    )
    await registrar.start()
    try:
        report = HealthReport.critical("health probe gave no answer within 0.25s")
        assert registrar.last_report == report and agent.updates[-1] == report
        assert cancelled.is_set(), "the hung probe is not left running"
    finally:
        await registrar.stop()


async def test_a_probe_that_raises_is_critical_with_its_text(agent: FakeAgent) -> None:
    async def broken() -> HealthReport:
        raise ConnectionRefusedError("mongodb at 127.0.0.1:27018 refused")

    registrar = Registrar("http://consul", REG, broken, ttl=TTL, interval=INTERVAL)
    await registrar.start()
    try:
        assert registrar.last_report == HealthReport.critical(
            "health probe raised ConnectionRefusedError: mongodb at 127.0.0.1:27018 refused"
        )
    finally:
        await registrar.stop()


async def test_a_probe_that_fails_before_it_is_awaited_is_critical_too(agent: FakeAgent) -> None:
    def not_a_coroutine() -> Awaitable[HealthReport]:
        raise RuntimeError("health not wired yet")

    registrar = Registrar("http://consul", REG, not_a_coroutine, ttl=TTL, interval=INTERVAL)
    await registrar.start()
    try:
        assert registrar.last_report == HealthReport.critical(
            "health probe raised RuntimeError: health not wired yet"
        )
    finally:
        await registrar.stop()


async def _never() -> HealthReport:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def test_a_keep_alive_is_due_an_interval_after_the_last_update_consul_took() -> None:
    """Counted from the probe's start instead, one lost keep-alive during a slow probe let
    the check go its whole TTL without an update (found in review)."""
    registrar = Registrar("http://consul", REG, _never, ttl=3.0)
    assert registrar.keep_alive_in(100.0) == 1.0  # nothing sent yet: an interval
    registrar._sent_at = 100.0
    assert registrar.keep_alive_in(100.2) == pytest.approx(0.8)
    # The probe started as the beat fell due, an interval after the last update: soon,
    # and after a failed keep-alive (nothing new taken) again a quarter interval later.
    assert registrar.keep_alive_in(101.0) == 0.25
    assert registrar.keep_alive_in(102.1) == 0.25
