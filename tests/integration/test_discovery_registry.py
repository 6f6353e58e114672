"""Registrar against the real Consul agent: register, heartbeat, report, re-register, leave."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import consul
import consul.aio
import pytest

from discovery import (
    DuplicateInstance,
    HealthReport,
    Registrar,
    Registration,
    ServiceWatch,
)
from infra.local import LocalSettings
from infra.processes.stub import StubProcess


@pytest.fixture
async def agent(infra: LocalSettings) -> AsyncIterator[consul.aio.Consul]:
    """A plain py-consul client to look at what the Registrar did."""
    c = consul.aio.Consul(host=infra.host, port=infra.consul_port)
    yield c
    await c.close()


class SwitchableProbe:
    def __init__(self) -> None:
        self.report = HealthReport.passing()
        self.calls = 0

    async def __call__(self) -> HealthReport:
        self.calls += 1
        return self.report


async def passing_ids(agent: consul.aio.Consul, service: str) -> set[str]:
    _, nodes = await agent.health.service(service, passing=True)
    return {n["Service"]["ID"] for n in nodes}


async def check_of(agent: consul.aio.Consul, instance_id: str) -> dict[str, Any] | None:
    checks = await agent.agent.checks()
    check: dict[str, Any] | None = checks.get(f"service:{instance_id}")
    return check


async def eventually(condition: Callable[[], Awaitable[bool]], within: float) -> float:
    """Poll `condition` until it holds; returns how long that took."""
    t0 = time.monotonic()
    async with asyncio.timeout(within):
        while True:
            if await condition():
                return time.monotonic() - t0
            await asyncio.sleep(0.05)


def registration(unique: Callable[[str], str], port: int = 6066) -> Registration:
    service = unique("disc-reg")
    return Registration(f"{service}-w1", "127.0.0.1", port, "1.4.2", service=service)


async def test_register_heartbeat_deregister(
    infra: LocalSettings, agent: consul.aio.Consul, unique: Callable[[str], str]
) -> None:
    reg = registration(unique)
    probe = SwitchableProbe()
    registrar = Registrar(infra.consul_url, reg, probe, ttl=3.0, interval=0.3)
    await registrar.start()
    await registrar.start()  # safe twice
    try:
        assert await passing_ids(agent, reg.service) == {reg.instance_id}
        _, nodes = await agent.health.service(reg.service, passing=True)
        service = nodes[0]["Service"]
        assert (service["Address"], service["Port"]) == ("127.0.0.1", 6066)
        assert service["Meta"] == {"version": "1.4.2"}
        assert "version=1.4.2" in service["Tags"]
        check = await check_of(agent, reg.instance_id)
        assert check is not None and check["Type"] == "ttl" and check["Status"] == "passing"

        # The heartbeat keeps it passing well past its 3 s TTL.
        await asyncio.sleep(4.0)
        assert await passing_ids(agent, reg.service) == {reg.instance_id}
        assert probe.calls >= 10

        await registrar.deregister()
        assert await check_of(agent, reg.instance_id) is None
        assert await passing_ids(agent, reg.service) == set()
        calls = probe.calls
        await asyncio.sleep(0.7)
        assert probe.calls == calls, "the heartbeat stopped with deregister()"
    finally:
        await registrar.stop()
        await registrar.stop()  # safe twice, and after deregister()
    assert await check_of(agent, reg.instance_id) is None


async def test_warning_and_critical_leave_the_passing_set(
    infra: LocalSettings, agent: consul.aio.Consul, unique: Callable[[str], str]
) -> None:
    reg = registration(unique)
    probe = SwitchableProbe()
    registrar = Registrar(infra.consul_url, reg, probe, ttl=3.0, interval=0.3)
    await registrar.start()
    try:

        async def passing() -> bool:
            return await passing_ids(agent, reg.service) == {reg.instance_id}

        async def not_passing() -> bool:
            return not await passing()

        for report in (HealthReport.warning("consumer stalled"), HealthReport.critical("no db")):
            probe.report = report
            await eventually(not_passing, within=3.0)
            check = await check_of(agent, reg.instance_id)
            assert check is not None
            assert check["Status"] == report.status and check["Output"] == report.reason
            assert registrar.last_report == report
            probe.report = HealthReport.passing()
            await eventually(passing, within=3.0)
    finally:
        await registrar.stop()


async def test_a_probe_that_raises_reports_critical_with_its_text(
    infra: LocalSettings, agent: consul.aio.Consul, unique: Callable[[str], str]
) -> None:
    reg = registration(unique)

    async def broken() -> HealthReport:
        raise ConnectionRefusedError("mongodb at 127.0.0.1:27018 refused")

    registrar = Registrar(infra.consul_url, reg, broken, ttl=3.0, interval=0.3)
    await registrar.start()
    try:
        check = await check_of(agent, reg.instance_id)
        assert check is not None and check["Status"] == "critical"
        assert "ConnectionRefusedError" in check["Output"]
        assert "mongodb at 127.0.0.1:27018 refused" in check["Output"]
        assert await passing_ids(agent, reg.service) == set()
    finally:
        await registrar.stop()


async def test_reregisters_when_the_agent_forgets_the_instance(
    infra: LocalSettings, agent: consul.aio.Consul, unique: Callable[[str], str]
) -> None:
    reg = registration(unique)
    registrar = Registrar(infra.consul_url, reg, SwitchableProbe(), ttl=3.0, interval=0.3)
    await registrar.start()
    try:
        await agent.agent.service.deregister(reg.instance_id)  # as an agent restart would
        assert await passing_ids(agent, reg.service) == set()

        async def back() -> bool:
            return await passing_ids(agent, reg.service) == {reg.instance_id}

        await eventually(back, within=3.0)
    finally:
        await registrar.stop()


async def test_a_second_live_process_with_the_same_id_is_refused(
    infra: LocalSettings, agent: consul.aio.Consul, unique: Callable[[str], str]
) -> None:
    reg = registration(unique)
    first = Registrar(infra.consul_url, reg, SwitchableProbe(), ttl=2.0, interval=0.3)
    await first.start()
    second = Registrar(infra.consul_url, reg, SwitchableProbe(), ttl=2.0, interval=0.3)
    try:
        with pytest.raises(DuplicateInstance, match="SERVICE_ID"):
            await second.start()
        # The refused one left the live one's registration alone.
        assert await passing_ids(agent, reg.service) == {reg.instance_id}
    finally:
        await second.stop()
        await first.stop()


async def test_a_crashed_predecessor_with_the_same_id_is_taken_over(
    infra: LocalSettings, agent: consul.aio.Consul, unique: Callable[[str], str]
) -> None:
    reg = registration(unique)
    # What a SIGKILLed worker leaves behind: registered and passing, nobody heartbeating.
    await agent.agent.service.register(
        reg.service,
        service_id=reg.instance_id,
        address="127.0.0.1",
        port=reg.port,
        check=consul.Check.ttl("2s") | {"DeregisterCriticalServiceAfter": "1m"},
    )
    await agent.agent.check.ttl_pass(f"service:{reg.instance_id}")
    registrar = Registrar(infra.consul_url, reg, SwitchableProbe(), ttl=2.0, interval=0.3)
    try:
        await registrar.start()
        assert await passing_ids(agent, reg.service) == {reg.instance_id}
        _, nodes = await agent.health.service(reg.service, passing=True)
        assert nodes[0]["Service"]["Meta"] == {"version": "1.4.2"}  # our registration now
    finally:
        await registrar.stop()


async def test_ttl_lapse_after_the_process_is_killed_leaves_the_passing_set(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    service = unique("disc-kill")
    watch = ServiceWatch(infra.consul_url, service, wait="10s")
    stub = StubProcess(infra.consul_url, service, ttl=2.0)
    await watch.start()
    try:
        await watch.wait_ready(5)
        await stub.start()

        async def listed() -> bool:
            return stub.id in {i.id for i in watch.instances}

        async def gone() -> bool:
            return not await listed()

        await eventually(listed, within=2.0)
        killed_at = await stub.kill()
        await eventually(gone, within=6.0)  # TTL 2 s, plus the agent's timer and the watch
        lapse = time.monotonic() - killed_at
        assert lapse >= 0.5, "it left because its TTL lapsed, not because it deregistered"
    finally:
        await stub.stop()
        await watch.stop()
