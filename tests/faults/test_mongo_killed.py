"""Scenario 5: the MongoDB-protocol server (FerretDB) is killed for 10 s under load."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from infra.local import LocalSettings
from infra.processes.private import free_port, private_stack
from tests.support.faults import (
    ConsulMonitor,
    Load,
    Platform,
    check_written,
    outage,
    phase,
    summary,
)
from tests.support.waiting import eventually, hold


async def test_mongo_killed_for_ten_seconds(
    infra: LocalSettings,
    unique: Callable[[str], str],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    ports = {"LOCAL_MONGO_PORT": str(free_port())}
    with private_stack(tmp_path, infra.cache_dir, ["ferretdb"], ports) as mongo:
        async with Platform.start(
            infra, unique, consul_url=infra.consul_url, mongo_url=mongo.settings.mongo_url
        ) as platform:
            load = await Load.prepare(platform, http)
            async with ConsulMonitor(platform) as monitor, load.running():
                await hold(phase(3))
                killed = (await outage(mongo, "ferretdb", 10)).killed
                await platform.wait_passing(2)
                restored = time.monotonic()
                await eventually(
                    lambda: (
                        load.back(restored, "read", {"200"})
                        and load.back(restored, "post", {"202"})
                    ),
                    what="every client reading and posting again",
                )
                await hold(phase(3))  # traffic once every client got through again
            written = await check_written(platform, load)
            passing_during = monitor.after(killed)
            summary("5-mongo-killed", load, written, f"min_passing={min(passing_during)}")

    assert load.unclear() == [], load.unclear()
    assert min(passing_during) == 0, "workers kept passing while MongoDB was down"
    assert written.missing == [] and written.duplicates == 0, written
    assert set(load.codes("post")) <= {"202", "5030"}, load.codes("post")
    bad = load.read_violations(monitor)
    assert bad == [], (
        [(a.code, round(a.started - killed, 2), round(a.ended - a.started, 3)) for a in bad],
        f"restored at {restored - killed:.2f}",
        [
            (round(s.asked - killed, 2), round(s.answered - killed, 2), s.passing)
            for s in monitor.samples
            if any(abs(s.asked - a.started) < 0.6 for a in bad)
        ],
    )
    # Once a client got through again after both workers passed, it stays through.
    relapsed = load.relapses(restored, "read", {"200"}) + load.relapses(restored, "post", {"202"})
    assert relapsed == [], relapsed
