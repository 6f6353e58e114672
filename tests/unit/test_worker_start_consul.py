"""A worker that cannot register in Consul finds out before its consumer joins the group.

It used to register last, after the faust app had started: during a Consul outage each
restart of a worker joined the group, took partitions, failed to register and left
again, and every one of those comings and goings rebalanced the whole group. The
runtime here is the real one with the real Consul registration, pointed at a port where
nothing listens; the other parts are stand-ins that record whether they were started."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import pytest

from dialogue_worker.adapters.registration import ConsulRegistration
from dialogue_worker.bootstrap import Components
from dialogue_worker.runtime import EXIT_FAILED, WorkerRuntime
from dialogue_worker.services.health import WorkerHealth
from dialogue_worker.settings import WorkerSettings


class _Part:
    """A part of the worker that does nothing but note what was asked of it."""

    started = False
    crashed = False

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def open(self) -> None:
        self.calls.append("open")

    async def start(self) -> None:
        self.calls.append("start")

    async def drain(self, grace: float) -> bool:
        return True

    async def stop(self) -> None:
        self.calls.append("stop")

    async def close(self) -> None:
        self.calls.append("close")


async def test_consul_unreachable_ends_the_start_before_the_consumer_joins(
    tmp_path: Path, refusing_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    settings = WorkerSettings(
        dialogue_env="local",
        data_dir=tmp_path,
        deregister_grace=0,
        consul_url=f"http://127.0.0.1:{refusing_port}",
        kafka_bootstrap=f"127.0.0.1:{refusing_port}",  # never a broker of another run
    )

    async def ping() -> None:
        return None

    health = WorkerHealth(ping, dict, stall_after=settings.stall_after)
    app, database, others = _Part(), _Part(), _Part()
    parts = Components(
        settings=settings,
        instance_id="worker-under-test",
        app=cast(Any, app),
        database=cast(Any, database),
        outbox=cast(Any, others),
        feed=cast(Any, others),
        lists=cast(Any, others),
        persister=cast(Any, others),
        committer=cast(Any, others),
        positions=cast(Any, others),
        health=health,
        metrics=cast(Any, others),
        registration=ConsulRegistration(settings, "worker-under-test", health),
    )
    with caplog.at_level(logging.ERROR, "dialogue_worker"):
        assert await WorkerRuntime(parts).run() == EXIT_FAILED
    assert "cannot start: cannot register 'worker-under-test' in Consul" in caplog.text
    assert "start" not in app.calls  # the faust app (and its consumer) never started
    assert "start" not in others.calls  # nor the producer
    assert database.calls == ["open", "close"]  # what was opened is closed again
