"""Scenario 3: the Kafka broker is killed and restarted while clients post."""

from __future__ import annotations

import asyncio
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


async def test_kafka_killed_and_restarted(
    infra: LocalSettings,
    unique: Callable[[str], str],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    ports = {"LOCAL_KAFKA_PORT": str(free_port()), "LOCAL_KAFKA_CONTROLLER_PORT": str(free_port())}
    with private_stack(tmp_path, infra.cache_dir, ["kafka"], ports) as kafka:
        bootstrap = kafka.settings.kafka_bootstrap
        async with Platform.start(
            infra, unique, consul_url=infra.consul_url, kafka_bootstrap=bootstrap
        ) as platform:
            load = await Load.prepare(platform, http)
            async with ConsulMonitor(platform) as monitor, load.running():
                await asyncio.sleep(phase(3))
                down = await outage(kafka, "kafka", phase(6))
                await asyncio.sleep(phase(8))
            written = await check_written(platform, load)
            summary("3-kafka-killed", load, written)

    posts = [a for a in load.attempts if a.kind == "post"]
    during = {a.code for a in posts if down.killed + 3 < a.started < down.restarting}
    after = [a.code for a in posts if a.started > down.restored + phase(5)]
    assert load.unclear() == [], load.unclear()
    assert written.missing == [] and written.duplicates == 0, written
    assert during == {"5031"}, during
    assert set(load.codes("post")) <= {"202", "5031"}, load.codes("post")
    assert after and set(after) == {"202"}, after
    assert load.read_violations(monitor) == [], load.read_violations(monitor)
