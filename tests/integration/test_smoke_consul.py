"""py-consul's aio client against the real Consul agent: TTL checks and blocking queries."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import consul
import consul.aio

from infra.local import LocalSettings
from tests.support.waiting import WITHIN


async def _passing_ids(c: consul.aio.Consul, name: str) -> tuple[int, set[str]]:
    index, nodes = await c.health.service(name, passing=True)
    return int(index), {n["Service"]["ID"] for n in nodes}


async def test_ttl_check_and_blocking_query(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    name = unique("smoke-svc")
    sid = f"{name}-1"
    c = consul.aio.Consul(host=infra.host, port=infra.consul_port)
    try:
        await c.agent.service.register(
            name,
            service_id=sid,
            address=infra.host,
            port=1234,
            check=consul.Check.ttl("3s") | {"DeregisterCriticalServiceAfter": "1m"},
        )
        check_id = f"service:{sid}"
        await c.agent.check.ttl_pass(check_id, "ok")
        index, ids = await _passing_ids(c, name)
        assert ids == {sid}

        # A blocking query on the passing set returns when the check fails: it may block
        # for 4 minutes, so an answer within the test's bound was caused by the change.
        waiter = asyncio.create_task(c.health.service(name, passing=True, index=index, wait="4m"))
        await c.agent.check.ttl_fail(check_id, "simulated failure")
        new_index, nodes = await asyncio.wait_for(waiter, WITHIN)
        assert int(new_index) > index and nodes == []

        # Passing again, then the TTL lapses with no heartbeat: it leaves the set.
        await c.agent.check.ttl_pass(check_id)
        assert (await _passing_ids(c, name))[1] == {sid}
        index, ids = await _passing_ids(c, name)
        async with asyncio.timeout(WITHIN):
            while ids:
                index, nodes = await c.health.service(name, passing=True, index=index, wait="10s")
                ids = {n["Service"]["ID"] for n in nodes}
        assert ids == set()
        await c.agent.service.deregister(sid)
    finally:
        await c.close()
