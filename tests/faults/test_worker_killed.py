"""Scenario 1: SIGKILL one of two workers under load, restart it; then the other."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from infra.local import LocalSettings
from tests.support.faults import ConsulMonitor, Load, Platform, check_written, phase, summary
from tests.support.waiting import hold


async def test_sigkill_each_worker_in_turn(
    infra: LocalSettings, unique: Callable[[str], str], http: aiohttp.ClientSession
) -> None:
    async with Platform.start(infra, unique, consul_url=infra.consul_url) as platform:
        load = await Load.prepare(platform, http)
        async with ConsulMonitor(platform) as monitor, load.running():
            await hold(phase(2))
            for worker in platform.workers:
                worker.kill()
                await hold(phase(3))  # traffic with one worker dead
                await worker.start().wait_ready(90)
                await hold(phase(2))
        written = await check_written(platform, load)
        summary("1-worker-sigkill", load, written)

    assert load.unclear() == [], load.unclear()
    assert written.missing == [] and written.duplicates == 0, written
    assert load.read_violations(monitor) == [] and load.failed_reads() == []
    assert set(load.codes("post")) <= {"202"}, load.codes("post")
