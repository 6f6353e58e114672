"""Scenario 2: SIGSTOP a worker (hung, not dead) for longer than its TTL, then SIGCONT."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import aiohttp

from infra.local import LocalSettings
from tests.support.faults import (
    ConsulMonitor,
    Load,
    Platform,
    check_written,
    phase,
    summary,
)
from tests.support.waiting import hold


async def test_sigstop_a_worker_past_its_ttl(
    infra: LocalSettings, unique: Callable[[str], str], http: aiohttp.ClientSession
) -> None:
    async with Platform.start(infra, unique, consul_url=infra.consul_url) as platform:
        load = await Load.prepare(platform, http)
        hung = platform.workers[0]
        assert hung.pid is not None
        async with ConsulMonitor(platform) as monitor, load.running():
            await hold(phase(2))
            stopped = time.monotonic()
            os.kill(hung.pid, signal.SIGSTOP)
            try:
                await platform.wait_passing(1)  # its TTL lapsed: Consul dropped it
                await hold(phase(3))  # traffic while it stays hung and out of the set
            finally:
                os.kill(hung.pid, signal.SIGCONT)
            resumed = time.monotonic()
            await platform.wait_passing(2)
            await hold(phase(3))
        alive = hung.returncode is None
        written = await check_written(platform, load)
        during = monitor.within(stopped, resumed)
        summary("2-worker-sigstop", load, written, f"min_passing={min(during)}")

    assert alive, "the hung worker died"
    assert min(during) == 1, "only the hung worker may leave the passing set"
    assert load.unclear() == [], load.unclear()
    assert written.missing == [] and written.duplicates == 0, written
    assert load.failed_reads() == [], load.failed_reads()
    assert set(load.codes("post")) <= {"202"}, load.codes("post")
