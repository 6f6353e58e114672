"""The soak's sampler (bench/soak/sampler.py) with hand-written fakes of the platform, the
load processes, Kafka and /proc, on a clock the test moves."""

from __future__ import annotations

from typing import Any

import pytest

from bench.soak import procfs
from bench.soak.sampler import CpuMeter, Sampler
from bench.soak.stats import IntervalStats

GATEWAY = 4242
SHARE = 0.5  # of one core, what the fake gateway uses all the time


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTarget:
    dev = None
    api_url = "http://gateway.invalid"

    def app_pids(self) -> dict[str, int | None]:
        return {"gateway": GATEWAY}

    def context_pids(self) -> dict[str, int | None]:
        return {}


class SlowLoad:
    """A load process whose answer to a tick takes `takes` seconds of the clock."""

    name = "load-rest"
    pid = None

    def __init__(self, clock: Clock, takes: float) -> None:
        self.clock, self.takes = clock, takes

    async def tick(self) -> IntervalStats:
        self.clock.now += self.takes
        return IntervalStats()


class FakeKafka:
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def lags(self) -> dict[int, int]:
        return {0: 0}


async def test_cpu_is_divided_by_the_time_between_its_own_readings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr(procfs, "cpu_seconds", lambda pid: SHARE * clock.now)
    monkeypatch.setattr(procfs, "rss_mib", lambda pid: 50.0)
    monkeypatch.setattr(procfs, "sockets", lambda pid: 3)
    sampler = Sampler(
        FakeTarget(),  # type: ignore[arg-type]
        [SlowLoad(clock, takes=10.0)],  # type: ignore[list-item]
        0.0,
        kafka=FakeKafka(),  # type: ignore[arg-type]
        clock=clock,
    )

    async def no_gauge() -> None:
        return None

    sampler._gauge = no_gauge  # type: ignore[method-assign]
    async with sampler:
        clock.now = 10.0
        sample = await sampler.sample()  # asking the load takes 10 s of it
        clock.now = 30.0
        second = await sampler.sample()

    assert sample.cpu["gateway"] == pytest.approx(SHARE * 100)
    assert second.cpu["gateway"] == pytest.approx(SHARE * 100)
    assert sample.t == 10.0 and second.t == 30.0


def test_a_meter_reads_nothing_at_first_and_for_a_process_that_is_gone() -> None:
    used: dict[int, Any] = {1: 2.0}
    clock = Clock()
    meter = CpuMeter(lambda pid: used.get(pid), clock)
    assert meter.percent(1) is None  # the first reading has nothing to compare to
    used[1], clock.now = 3.0, 4.0
    assert meter.percent(1) == pytest.approx(25.0)
    assert meter.percent(2) is None
    assert meter.percent(1) is None  # no time passed
