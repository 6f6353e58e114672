"""Scenario 1: SIGKILL one of two workers under load, restart it; then the other."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from infra.local import LocalSettings
from tests.support.faults import ConsulMonitor, Load, Platform, check_written, phase, summary


async def test_sigkill_each_worker_in_turn(
    infra: LocalSettings, unique: Callable[[str], str], http: aiohttp.ClientSession
) -> None:
    async with Platform.start(infra, unique, consul_url=infra.consul_url) as platform:
        load = await Load.prepare(platform, http)
        async with ConsulMonitor(platform) as monitor, load.running():
            await asyncio.sleep(phase(2))
            for worker in platform.workers:
                worker.kill()
                await asyncio.sleep(phase(3))
                await worker.start().wait_ready(90)
                await asyncio.sleep(phase(2))
        written = await check_written(platform, load)
        summary("1-worker-sigkill", load, written)

    assert load.unclear() == [], load.unclear()
    assert written.missing == [] and written.duplicates == 0, written
    assert load.read_violations(monitor) == [] and load.failed_reads() == []
    assert set(load.codes("post")) <= {"202"}, load.codes("post")
