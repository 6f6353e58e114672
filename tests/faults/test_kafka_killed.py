"""Scenario 3: the Kafka broker is killed and restarted while clients post."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp

from infra.local import LocalSettings
from infra.processes.private import free_range, private_stack
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


async def test_kafka_killed_and_restarted(
    infra: LocalSettings,
    unique: Callable[[str], str],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    base = free_range(2)  # two calls of free_port() could give one port twice
    ports = {"LOCAL_KAFKA_PORT": str(base), "LOCAL_KAFKA_CONTROLLER_PORT": str(base + 1)}
    with private_stack(tmp_path, infra.cache_dir, ["kafka"], ports) as kafka:
        bootstrap = kafka.settings.kafka_bootstrap
        async with Platform.start(
            infra, unique, consul_url=infra.consul_url, kafka_bootstrap=bootstrap
        ) as platform:
            load = await Load.prepare(platform, http)
            async with ConsulMonitor(platform) as monitor, load.running():
                await hold(phase(3))
                down = await outage(kafka, "kafka", phase(6))
                await eventually(
                    lambda: load.back(down.restored, "post", {"202"}),
                    what="every client posting again",
                )
                await hold(phase(3))  # traffic once every client got through again
            written = await check_written(platform, load)
            summary("3-kafka-killed", load, written)

    posts = [a for a in load.attempts if a.kind == "post"]
    during = {a.code for a in posts if down.gone < a.started < down.restarting}
    relapsed = load.relapses(down.restored, "post", {"202"})  # once through, always through
    assert load.unclear() == [], load.unclear()
    assert written.missing == [] and written.duplicates == 0, written
    assert during == {"5031"}, during
    assert set(load.codes("post")) <= {"202", "5031"}, load.codes("post")
    assert load.back(down.restored, "post", {"202"}) and relapsed == [], relapsed
    assert load.read_violations(monitor) == [], load.read_violations(monitor)
