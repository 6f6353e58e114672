"""Which instances the watch serves from Consul's health answer, and how it asks for it
(a hand-written Consul that answers blocking queries from a queue; no network)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import discovery.watch
from discovery import ServiceWatch
from discovery.watch import serving
from tests.support.waiting import eventually

SERF = "serfHealth"


def check(status: str, check_id: str = "service:{id}", service_id: str = "{id}") -> dict[str, str]:
    return {"CheckID": check_id, "ServiceID": service_id, "Status": status}


def entry(instance_id: str, *checks: dict[str, str], node: str = "node-1") -> dict[str, Any]:
    """One element of /v1/health/service/<name>, as Consul 1.14 writes it."""
    return {
        "Node": {"Node": node, "Address": "10.0.0.9"},
        "Service": {
            "ID": instance_id,
            "Service": "dialogue",
            "Address": "10.0.0.1",
            "Port": 8100,
            "Tags": [],
            "Meta": {},
        },
        "Checks": [
            {k: v.format(id=instance_id) for k, v in c.items()}
            for c in (check("passing", SERF, ""), *checks)
        ],
    }


def ids(nodes: list[Any]) -> list[str]:
    return [n["Service"]["ID"] for n in nodes]


def test_warning_serves_critical_does_not() -> None:
    answer = [
        entry("ok", check("passing")),
        entry("stuck-partition", check("warning")),
        entry("no-mongodb", check("critical")),
    ]
    assert ids(serving(answer)) == ["ok", "stuck-partition"]


def test_maintenance_and_a_failed_node_take_the_instance_out() -> None:
    """Maintenance mode is a critical check of its own, of the service or of the node;
    a node that stopped answering gossip has serfHealth critical."""
    node_down = entry("node-down", check("passing"))
    node_down["Checks"][0]["Status"] = "critical"
    answer = [
        node_down,
        entry("svc-maint", check("passing"), check("critical", "_service_maintenance:{id}")),
        entry("node-maint", check("warning"), check("critical", "_node_maintenance", "")),
        entry("ok", check("passing")),
    ]
    assert ids(serving(answer)) == ["ok"]


def test_malformed_checks_do_not_serve() -> None:
    no_checks = entry("missing")
    del no_checks["Checks"]
    odd = entry("odd", check("passing"))
    odd["Checks"].append("critical")
    no_status = entry("no-status", {"CheckID": "service:no-status"})
    assert serving([no_checks, odd, no_status, "not an entry"]) == []  # type: ignore[list-item]
    assert ids(serving([entry("no-check-but-the-node")])) == ["no-check-but-the-node"]


STATUSES = st.sampled_from(["passing", "warning", "critical", "maintenance", "", "unknown"])


@given(st.lists(st.lists(STATUSES, max_size=4), max_size=6))
def test_an_instance_serves_exactly_when_every_check_is_passing_or_warning(
    statuses: list[list[str]],
) -> None:
    answer = [entry(f"w{i}", *(check(s) for s in checks)) for i, checks in enumerate(statuses)]
    kept = ids(serving(answer))
    assert kept == [
        f"w{i}"
        for i, checks in enumerate(statuses)
        if all(s in ("passing", "warning") for s in checks)
    ]


class FakeHealth:
    """`health.service` of py-consul's asyncio client: the first query answers at once,
    a blocking one (with `index`) waits for the test's next answer. With `passing`, it
    filters as Consul does (every check passing), so a watch relying on it drops warning."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answers: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        self.index = 0

    async def service(self, service: str, **kwargs: Any) -> tuple[str, list[dict[str, Any]]]:
        self.calls.append(kwargs)
        nodes = await self.answers.get()
        if kwargs.get("passing"):
            nodes = [n for n in nodes if all(c["Status"] == "passing" for c in n["Checks"])]
        self.index += 1
        return str(self.index), nodes


class FakeConsul:
    def __init__(self) -> None:
        self.health = FakeHealth()

    async def close(self) -> None:
        pass


@pytest.fixture
async def consul(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeConsul]:
    fake = FakeConsul()
    monkeypatch.setattr(discovery.watch, "open_consul", lambda url, token=None: fake)
    yield fake


async def test_the_watch_serves_warning_and_drops_critical_through_blocking_queries(
    consul: FakeConsul,
) -> None:
    """A worker with one stuck partition (`warning`) serves reads, as /ping, /ready and
    the compose health check say; Consul's `?passing` filter used to drop it."""
    watch = ServiceWatch("http://consul", "dialogue", wait="30s")
    await watch.start()
    try:
        await consul.health.answers.put(
            [
                entry("a", check("passing")),
                entry("b", check("warning")),
                entry("c", check("critical")),
            ]
        )
        await watch.wait_ready(5)
        assert [i.id for i in watch.instances] == ["a", "b"]

        await consul.health.answers.put(
            [entry("a", check("passing")), entry("b", check("critical"))]
        )
        await eventually(lambda: [i.id for i in watch.instances] == ["a"], what="b dropped")

        first, second, *_ = consul.health.calls
        assert not any(call.get("passing") for call in consul.health.calls)
        assert first == {"index": None, "wait": "30000ms"}  # the first query does not block
        assert second == {"index": 1, "wait": "30000ms"}  # then each blocks on the last index
    finally:
        await watch.stop()
