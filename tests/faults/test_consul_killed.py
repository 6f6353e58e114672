"""Scenario 4: the Consul agent is killed for 20 s under load, then restarted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from infra.local import LocalSettings, Stack
from infra.processes.private import private_consul
from platform_common.local import LOCAL_ADMIN_TOKEN
from tests.support.faults import Load, Platform, check_written, outage, phase, summary
from tests.support.waiting import NeverHappened, eventually, hold

OUTAGE = 20.0


@pytest.fixture
def consul(infra: LocalSettings, tmp_path: Path) -> Iterator[Stack]:
    with private_consul(tmp_path, infra.cache_dir) as stack:
        yield stack


async def gateway_sees(http: aiohttp.ClientSession, platform: Platform, ids: set[str]) -> bool:
    """Wait (bounded) until the gateway's admin view lists exactly these instances."""
    headers = {"Authorization": f"Bearer {LOCAL_ADMIN_TOKEN}"}

    async def listed() -> set[str]:
        url = f"{platform.gateway.url}/v1/admin/instances"
        async with http.get(url, headers=headers) as resp:
            return {str(i["id"]) for i in (await resp.json())["data"]}

    try:
        await eventually(listed, lambda seen: seen == ids, what=f"the gateway listing {ids}")
    except NeverHappened:
        return False
    return True


async def test_consul_killed_for_twenty_seconds(
    infra: LocalSettings,
    unique: Callable[[str], str],
    http: aiohttp.ClientSession,
    consul: Stack,
) -> None:
    url = consul.settings.consul_url
    async with Platform.start(infra, unique, consul_url=url) as platform:
        load = await Load.prepare(platform, http)
        ids = {w.service_id for w in platform.workers}
        assert await gateway_sees(http, platform, ids)
        async with load.running():
            await hold(phase(2))
            await outage(consul, "consul", OUTAGE)
            # The restarted dev agent has forgotten everything: the workers re-register.
            await platform.wait_passing(2)
            # The gateway resumes watching: a worker started now reaches it.
            third = platform.workers[0].sibling(unique("worker"))
            platform.workers.append(third)
            await third.start().wait_ready(90)
            resumed = await gateway_sees(http, platform, ids | {third.service_id})
            await hold(phase(2))
        written = await check_written(platform, load)
        summary("4-consul-killed", load, written, f"outage_s={OUTAGE:.0f}")

    assert resumed, "the gateway did not pick up a worker registered after Consul returned"
    assert load.unclear() == [], load.unclear()
    assert written.missing == [] and written.duplicates == 0, written
    assert load.failed_reads() == [], load.failed_reads()
    assert set(load.codes("post")) <= {"202"}, load.codes("post")
