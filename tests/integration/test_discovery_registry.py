"""Registrar against the real Consul agent: register, heartbeat, report, re-register, leave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import consul
import consul.aio
import pytest

import discovery.watch
from discovery import (
    DuplicateInstance,
    HealthReport,
    Registrar,
    Registration,
    ServiceWatch,
)
from discovery.watch import serving
from infra.local import LocalSettings
from infra.processes.stub import StubProcess
from tests.support.waiting import WITHIN, eventually, settle


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


def heartbeats(instance_id: str) -> list[asyncio.Task[Any]]:
    """The Registrar's heartbeat tasks of `instance_id` that are still running."""
    return [t for t in asyncio.all_tasks() if t.get_name() == f"heartbeat:{instance_id}"]


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

        # The heartbeat keeps it passing well past its 3 s TTL: a beat waits 0.3 s after
        # the one before, so the 15th comes at least 4.2 s after the first.
        await eventually(lambda: probe.calls >= 15, what="15 heartbeats")
        assert await passing_ids(agent, reg.service) == {reg.instance_id}

        assert heartbeats(reg.instance_id)
        await registrar.deregister()
        assert await check_of(agent, reg.instance_id) is None
        assert await passing_ids(agent, reg.service) == set()
        calls = probe.calls
        await settle()
        assert heartbeats(reg.instance_id) == [], "the heartbeat stopped with deregister()"
        assert probe.calls == calls
    finally:
        await registrar.stop()
        await registrar.stop()  # safe twice, and after deregister()
    assert await check_of(agent, reg.instance_id) is None


async def test_warning_stays_in_the_watch_critical_and_maintenance_leave_it(
    infra: LocalSettings,
    agent: consul.aio.Consul,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`warning` (a worker with a stuck partition) still serves reads; `critical` and
    maintenance mode do not. Consul's `?passing` would drop warning too."""
    reg = registration(unique)
    probe = SwitchableProbe()
    registrar = Registrar(infra.consul_url, reg, probe, ttl=3.0, interval=0.3)
    answers: list[list[dict[str, Any]]] = []  # what Consul answered the watch, in order

    def spy(nodes: list[dict[str, Any]]) -> list[Mapping[str, Any]]:
        answers.append(nodes)
        return serving(nodes)

    monkeypatch.setattr(discovery.watch, "serving", spy)
    watch = ServiceWatch(infra.consul_url, reg.service, wait="10s")
    await registrar.start()
    await watch.start()
    try:

        def listed() -> bool:
            return reg.instance_id in {i.id for i in watch.instances}

        def seen_by_watch(status: str) -> bool:
            """The watch's latest answer has the instance's own check at `status` (the
            set is updated from it in the same step)."""
            latest = answers[-1] if answers else []
            return any(
                check.get("CheckID") == registrar.check_id and check.get("Status") == status
                for node in latest
                for check in node.get("Checks") or ()
            )

        await eventually(listed, what="listed while passing")

        probe.report = HealthReport.warning("partition stuck: t/3 at offset 7 for 31s (lag 2)")
        await eventually(lambda: seen_by_watch("warning"), what="the watch told of warning")
        assert listed(), "a worker in warning serves reads"
        check = await check_of(agent, reg.instance_id)
        assert check is not None and check["Status"] == "warning"
        assert check["Output"] == probe.report.reason
        assert registrar.last_report == probe.report

        probe.report = HealthReport.critical("no db")
        await eventually(lambda: not listed(), what="critical out of the watch")
        check = await check_of(agent, reg.instance_id)
        assert check is not None and (check["Status"], check["Output"]) == ("critical", "no db")

        probe.report = HealthReport.passing()
        await eventually(listed, what="listed again once passing")

        # Maintenance mode is a critical check of its own beside the passing TTL check.
        await agent.agent.service.maintenance(reg.instance_id, True, "operator drains it")
        await eventually(lambda: not listed(), what="maintenance out of the watch")
        await agent.agent.service.maintenance(reg.instance_id, False)
        await eventually(listed, what="listed again after maintenance")
    finally:
        await watch.stop()
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

        await eventually(back, what="registered again")
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


async def test_a_live_process_reporting_critical_keeps_its_id(
    infra: LocalSettings, agent: consul.aio.Consul, unique: Callable[[str], str]
) -> None:
    """Its check is critical on purpose (its MongoDB is down), and it keeps updating it:
    a second process with its id is refused, not let in over it (they took turns
    flipping the check, and the first one's stop deregistered the second)."""
    reg = registration(unique)
    sick = SwitchableProbe()
    sick.report = HealthReport.critical("mongodb unreachable: connection refused")
    first = Registrar(infra.consul_url, reg, sick, ttl=2.0, interval=0.3)
    await first.start()
    second = Registrar(infra.consul_url, reg, SwitchableProbe(), ttl=2.0, interval=0.3)
    try:
        with pytest.raises(DuplicateInstance, match="SERVICE_ID"):
            await second.start()
        check = await check_of(agent, reg.instance_id)
        assert check is not None and check["Status"] == "critical"
        assert check["Output"] == "mongodb unreachable: connection refused"
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
    infra: LocalSettings, agent: consul.aio.Consul, unique: Callable[[str], str]
) -> None:
    service = unique("disc-kill")
    watch = ServiceWatch(infra.consul_url, service, wait="10s")
    stub = StubProcess(infra.consul_url, service, ttl=2.0)
    await watch.start()
    try:
        await watch.wait_ready(WITHIN)
        await stub.start()

        def listed() -> bool:
            return stub.id in {i.id for i in watch.instances}

        await eventually(listed, what="the stub in the watch")
        await stub.kill()
        await eventually(lambda: not listed(), what="the killed stub gone from the watch")
        # It left because its TTL lapsed, not because it deregistered: the registration
        # stays, with its check critical, until deregister_critical_after.
        check = await check_of(agent, stub.id)
        assert check is not None and check["Status"] == "critical", check
        assert "TTL expired" in check["Output"], check
    finally:
        await stub.stop()
        await watch.stop()


async def test_a_twin_starting_while_the_first_probe_runs_is_refused(
    infra: LocalSettings, agent: consul.aio.Consul, unique: Callable[[str], str]
) -> None:
    """Two replicas with one SERVICE_ID, started together: the first's check stood
    critical with no output until its first probe answered (seconds, for a worker), which
    read as nobody's, and the second took the registration over."""
    reg = registration(unique)
    gate = asyncio.Event()

    async def slow_probe() -> HealthReport:
        await gate.wait()
        return HealthReport.passing()

    first = Registrar(infra.consul_url, reg, slow_probe, ttl=2.0, interval=1.5)
    starting = asyncio.create_task(first.start())
    second = Registrar(infra.consul_url, reg, SwitchableProbe(), ttl=2.0, interval=0.3)
    try:
        await eventually(
            lambda: check_of(agent, reg.instance_id),
            lambda check: bool(check and check.get("Output")),
            what="the first registered and claimed",
        )
        with pytest.raises(DuplicateInstance, match="SERVICE_ID"):
            await second.start()
        gate.set()
        await starting
        await eventually(  # the first one's own registration, passing once its probe is
            lambda: passing_ids(agent, reg.service),
            lambda ids: ids == {reg.instance_id},
            what="the first one passing",
        )
    finally:
        gate.set()
        await asyncio.gather(starting, return_exceptions=True)
        await second.stop()
        await first.stop()
