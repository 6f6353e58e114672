"""BalancedClient over real aiohttp servers registered in the real Consul."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from discovery import (
    BalancedClient,
    HealthReport,
    InstanceStats,
    NoInstanceAvailable,
    OutcomeUnknown,
    Registrar,
    Registration,
    ServiceWatch,
)
from discovery.client import ANSWER_MAX_BYTES
from gateway.adapters.workers import handler_failed, refuses_gateway
from infra.local import LocalSettings
from infra.processes.stub import StubProcess, StubServer
from platform_common.http import TIMEOUT_HEADER, TIMEOUT_MS_MAX
from tests.support.waiting import eventually


async def passing() -> HealthReport:
    return HealthReport.passing()


@dataclass
class Fleet:
    """Stub workers registered under one service, the watch and the client in front."""

    service: str
    watch: ServiceWatch
    servers: list[StubServer] = field(default_factory=list)
    registrars: list[Registrar] = field(default_factory=list)
    clients: list[BalancedClient] = field(default_factory=list)

    def client(self, **kwargs: object) -> BalancedClient:
        client = BalancedClient(self.watch, **kwargs)  # type: ignore[arg-type]
        self.clients.append(client)
        return client

    async def ready(self, n: int) -> None:
        await eventually(lambda: len(self.watch.instances) == n, what=f"{n} instances")


class Clock:
    """The balancer's clock, moved by the test: cool-downs end when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fleet_of(
    infra: LocalSettings, unique: Callable[[str], str]
) -> AsyncIterator[Callable[[int], Awaitable[Fleet]]]:
    fleets: list[Fleet] = []

    async def make(n: int) -> Fleet:
        service = unique("disc-client")
        fleet = Fleet(service, ServiceWatch(infra.consul_url, service))
        fleets.append(fleet)
        for _ in range(n):
            server = StubServer()
            await server.start()
            reg = Registration(server.state.id, "127.0.0.1", server.port, "1.0", service=service)
            registrar = Registrar(infra.consul_url, reg, passing, ttl=5.0)
            await registrar.start()
            fleet.servers.append(server)
            fleet.registrars.append(registrar)
        await fleet.watch.start()
        await fleet.ready(n)
        return fleet

    yield make
    for fleet in fleets:
        for client in fleet.clients:
            await client.stop()
        await fleet.watch.stop()
        for registrar in fleet.registrars:
            await registrar.stop()
        for server in fleet.servers:
            await server.stop()


async def test_round_robin_over_three_servers_is_even(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    fleet = await fleet_of(3)
    client = fleet.client()
    await client.start()
    await client.start()  # safe twice
    served = Counter([(await client.request("GET", "/chats")).instance_id for _ in range(300)])
    assert sorted(served.values()) == [100, 100, 100]
    assert {s.state.id: s.state.hits["/chats"] for s in fleet.servers} == served
    stats = client.stats()
    assert {s.id: s.requests for s in stats} == served
    assert all(s.healthy and s.failures == 0 and s.ejections == 0 for s in stats)
    assert {s.url for s in stats} == {f"http://127.0.0.1:{s.port}" for s in fleet.servers}

    # Concurrent callers split evenly too.
    results = await asyncio.gather(*(client.request("GET", "/chats") for _ in range(90)))
    assert sorted(Counter(r.instance_id for r in results).values()) == [30, 30, 30]


async def test_headers_params_body_and_4xx_pass_through(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    fleet = await fleet_of(1)
    client = fleet.client(headers={"Authorization": "Entrypoint s3cret"})
    await client.start()
    resp = await client.request(
        "POST", "/chats", params={"uid": "7"}, json={"users": [7, 9]}, idempotent=False
    )
    echoed = resp.json()
    assert resp.status == 200 and resp.headers["content-type"].startswith("application/json")
    assert echoed["authorization"] == "Entrypoint s3cret"
    assert echoed["query"] == {"uid": "7"} and echoed["body"] == '{"users": [7, 9]}'
    overridden = await client.request("GET", "/x", headers={"Authorization": "Entrypoint other"})
    assert overridden.json()["authorization"] == "Entrypoint other"

    not_found = await client.request("GET", "/status/404")
    assert not_found.status == 404 and not_found.json()["status"] == 404
    assert client.stats()[0].failures == 0 and client.stats()[0].healthy


async def test_each_try_tells_the_instance_how_long_the_client_waits(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    """With `timeout_header`, every try carries what the client waits for it, in whole
    milliseconds: the request timeout, or less when the deadline leaves less."""
    fleet = await fleet_of(2)
    fleet.servers[0].state.delay = 30.0
    client = fleet.client(
        request_timeout=3.0, deadline=5.0, attempts=2, timeout_header=TIMEOUT_HEADER
    )
    await client.start()
    first = await client.request("GET", "/chats")
    waited = int(first.json()["timeout"])
    if not fleet.servers[0].state.hits["/chats"]:  # the fast one came first
        assert waited == 3000
        first = await client.request("GET", "/chats")  # the slow one, then the fast one
        waited = int(first.json()["timeout"])
    assert 1 <= waited < 2000  # what the slow one's 3 s left of the 5 s deadline
    plain = fleet.client(request_timeout=0.6)
    await plain.start()
    assert (await plain.request("GET", "/chats")).json()["timeout"] is None
    fleet.servers[0].state.delay = 0.0
    patient = fleet.client(request_timeout=3e6, deadline=3e6, timeout_header=TIMEOUT_HEADER)
    await patient.start()
    answer = await patient.request("GET", "/chats")
    assert answer.json()["timeout"] == str(TIMEOUT_MS_MAX)  # what an instance takes at most


async def test_5xx_ejects_the_instance_and_the_read_moves_on(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    fleet = await fleet_of(3)
    sick = fleet.servers[1]
    sick.state.fail_status = 503
    clock = Clock()
    client = fleet.client(cooldown=0.5, clock=clock)
    await client.start()
    served = [(await client.request("GET", "/chats")).instance_id for _ in range(30)]
    assert sick.state.id not in served and len(served) == 30
    assert sick.state.hits["/chats"] == 1  # one failed try, then it sat out
    stats = {s.id: s for s in client.stats()}
    assert stats[sick.state.id].failures == 1 and stats[sick.state.id].ejections == 1

    # Still sick after the cool-down: the readmission probe fails and traffic stays away.
    clock.now += 0.6
    served = [(await client.request("GET", "/chats")).instance_id for _ in range(10)]
    await eventually(lambda: sick.state.hits["/ping"] >= 1, what="the readmission probe")
    assert sick.state.id not in served and sick.state.hits["/chats"] == 1
    assert not {s.id: s for s in client.stats()}[sick.state.id].healthy

    # Healthy again: the next probe, once the doubled cool-down is over, readmits it.
    sick.state.fail_status = None
    clock.now += 1.1
    await eventually(
        lambda: client.request("GET", "/chats"),
        lambda answer: answer.instance_id == sick.state.id,
        what="a request served by the readmitted instance",
    )
    assert {s.id: s for s in client.stats()}[sick.state.id].healthy


async def test_non_idempotent_request_is_not_retried_once_it_reached_an_instance(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    fleet = await fleet_of(2)
    for server in fleet.servers:
        server.state.fail_status = 500
    client = fleet.client()
    await client.start()
    with pytest.raises(OutcomeUnknown, match="not idempotent"):
        await client.request("POST", "/chats", json={"users": [1, 2]}, idempotent=False)
    assert sum(s.state.hits["/chats"] for s in fleet.servers) == 1


async def test_non_idempotent_request_moves_on_when_the_connection_is_refused(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    fleet = await fleet_of(2)
    gone, alive = fleet.servers
    await gone.stop()  # still registered and passing, but nothing listens
    client = fleet.client()
    await client.start()
    for _ in range(4):
        resp = await client.request("POST", "/chats", json={"users": [1, 2]}, idempotent=False)
        assert resp.instance_id == alive.state.id
    assert alive.state.hits["/chats"] == 4
    assert {s.id: s for s in client.stats()}[gone.state.id].ejections == 1


async def test_every_instance_failing_is_a_clear_no_instance_error(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    fleet = await fleet_of(3)
    for server in fleet.servers:
        server.state.fail_status = 502
    client = fleet.client(attempts=5)
    await client.start()
    with pytest.raises(NoInstanceAvailable, match="HTTP 502") as err:
        await client.request("GET", "/chats")
    assert err.value.retryable
    assert sum(s.state.hits["/chats"] for s in fleet.servers) == 3  # each tried once

    # Every instance ejected: the one whose cool-down ends first still gets a try, and a
    # server that recovered answers at once instead of a 503 for the whole cool-down.
    fleet.servers[0].state.fail_status = None
    resp = await client.request("GET", "/chats")
    assert resp.instance_id == fleet.servers[0].state.id


async def test_no_registered_instance_is_a_clear_no_instance_error(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    fleet = await fleet_of(0)
    client = fleet.client()
    await client.start()
    with pytest.raises(NoInstanceAvailable, match="registered and passing"):
        await client.request("GET", "/chats")


async def test_a_timeout_ejects_the_instance_and_the_read_moves_on(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    fleet = await fleet_of(2)
    hung, fine = fleet.servers
    hung.state.delay = 30.0
    client = fleet.client(request_timeout=2.0)  # the healthy one answers well within it
    await client.start()
    served = [(await client.request("GET", "/chats")).instance_id for _ in range(4)]
    assert served == [fine.state.id] * 4
    stats = {s.id: s for s in client.stats()}
    assert stats[hung.state.id].failures == 1 and not stats[hung.state.id].healthy


async def test_a_late_timeout_from_an_old_address_does_not_eject_the_new_one(
    fleet_of: Callable[[int], Awaitable[Fleet]], infra: LocalSettings
) -> None:
    """A worker registered again under the same id at another address: the timeout of a
    request sent to the old address, ending after the watch moved the id, ejected the
    instance at the new one (found in review)."""
    fleet = await fleet_of(1)
    (old,) = fleet.servers
    old.state.delay = 30.0
    client = fleet.client(request_timeout=2.0, attempts=1)
    await client.start()
    pending = asyncio.create_task(client.request("GET", "/chats"))
    await eventually(lambda: old.state.hits["/chats"] == 1, what="the request at the old one")
    await fleet.registrars.pop().stop()  # it went away and came back elsewhere
    new = StubServer(old.state.id)
    await new.start()
    fleet.servers.append(new)
    moved = Registration(old.state.id, "127.0.0.1", new.port, "1.0", service=fleet.service)
    registrar = Registrar(infra.consul_url, moved, passing, ttl=5.0)
    await registrar.start()
    fleet.registrars.append(registrar)
    await eventually(
        lambda: [i.port for i in fleet.watch.instances], lambda p: p == [new.port], what="moved"
    )
    with pytest.raises(NoInstanceAvailable, match="no answer within 2s"):
        await pending
    (stats,) = client.stats()
    assert (stats.url, stats.healthy, stats.failures) == (f"http://127.0.0.1:{new.port}", True, 0)
    assert (await client.request("GET", "/chats")).instance_id == old.state.id
    assert new.state.hits["/chats"] == 1


async def test_the_deadline_bounds_the_whole_request(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    fleet = await fleet_of(3)
    for server in fleet.servers:
        server.state.delay = 30.0
    client = fleet.client(request_timeout=0.5, deadline=0.8, attempts=3)
    await client.start()
    with pytest.raises(NoInstanceAvailable, match="no answer within") as err:
        await client.request("GET", "/chats")
    assert "deadline of 0.8s reached" in str(err.value)  # not the servers' 30 s: the deadline
    # 0.5 s on the first, the 0.3 s left on the second, no time for the third attempt.
    assert 1 <= sum(s.state.hits["/chats"] for s in fleet.servers) <= 2
    # Only the first had its full request timeout: the second, cut short by the
    # deadline, is not held against its instance.
    assert sum(s.failures for s in client.stats()) == 1


async def test_killing_a_server_under_load_fails_no_caller_request(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    service = unique("disc-kill-load")
    # TTL 10 s: Consul keeps listing the victim throughout; only the client's ejection acts.
    stubs = [StubProcess(infra.consul_url, service, ttl=10.0) for _ in range(3)]
    watch = ServiceWatch(infra.consul_url, service)
    client = BalancedClient(watch)
    try:
        await asyncio.gather(*(stub.start() for stub in stubs))
        await watch.start()
        await client.start()
        await eventually(lambda: len(watch.instances) == 3, what="three instances")

        served: list[tuple[float, str]] = []
        failures: list[BaseException] = []
        stop = asyncio.Event()

        async def caller() -> None:
            for _ in range(5000):  # bounded, whatever happens
                if stop.is_set():
                    return
                sent_at = time.monotonic()
                try:
                    resp = await client.request("GET", "/messages", params={"cid": "c1"})
                except NoInstanceAvailable as exc:
                    failures.append(exc)
                else:
                    assert resp.status == 200
                    served.append((sent_at, resp.instance_id))

        load = [asyncio.create_task(caller()) for _ in range(8)]
        try:
            every = {s.id for s in stubs}
            await eventually(lambda: {i for _, i in served} == every, what="all three serving")
            victim = stubs[1]

            def victim_stats() -> InstanceStats:
                return next(s for s in client.stats() if s.id == victim.id)

            killed_at = await victim.kill()
            first_failure = await eventually(
                victim_stats, lambda s: s.failures >= 1, every=0.005, what="its first failure"
            )
            await eventually(
                lambda: sum(1 for t, _ in served if t > killed_at) >= 200,
                what="200 requests sent after the kill",
            )
        finally:
            stop.set()
            await asyncio.gather(*load)

        assert failures == []
        assert len(served) > 100
        assert {i for t, i in served if t < killed_at} == {s.id for s in stubs}
        after = Counter(i for t, i in served if t > killed_at)  # sent after the kill
        assert set(after) == {stubs[0].id, stubs[2].id}
        # What docs/discovery.md promises: no try is routed to the dead instance after its
        # first failure (Consul lists it all along). Every try it got was answered before
        # the kill or failed; those that failed were in flight when its first failure came,
        # at most one per caller.
        end = victim_stats()
        assert end.requests == first_failure.requests, "routed to it after its first failure"
        answered = sum(1 for _, i in served if i == victim.id)
        assert end.requests == answered + end.failures
        assert 1 <= end.failures <= len(load)
        assert end.ejections >= 1 and not end.healthy
    finally:
        await client.stop()
        await watch.stop()
        for stub in stubs:
            await stub.stop()


async def test_a_connect_that_hangs_is_a_connection_never_made(
    fleet_of: Callable[[int], Awaitable[Fleet]], infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    """A host that drops packets (gone, firewalled): the connect never completes. A POST
    used to wait out the whole request timeout and end as "may or may not be applied"
    although it never reached the instance; it now moves on to the next one."""
    fleet = await fleet_of(1)
    (alive,) = fleet.servers
    hole = socket.socket()  # listens, never accepts: once its backlog is full, SYNs drop
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    fillers = [socket.socket() for _ in range(4)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(hole.getsockname())
    try:
        hole_id = unique("hole")
        registration = Registration(
            hole_id, "127.0.0.1", hole.getsockname()[1], "1.0", service=fleet.service
        )
        registrar = Registrar(infra.consul_url, registration, passing, ttl=5.0)
        await registrar.start()
        fleet.registrars.append(registrar)
        await fleet.ready(2)
        client = fleet.client(request_timeout=2.0)  # no connect bound of its own
        await client.start()
        for _ in range(2):  # round robin: one of them picks the hole first
            resp = await client.request("POST", "/chats", json={"users": [1, 2]}, idempotent=False)
            assert resp.instance_id == alive.state.id
        assert alive.state.hits["/chats"] == 2
        assert {s.id: s for s in client.stats()}[hole_id].ejections == 1
    finally:
        for s in (hole, *fillers):
            s.close()


async def test_a_hung_instance_is_ejected_even_when_its_try_has_the_whole_deadline(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    """With request_timeout >= deadline every first try is shorter than request_timeout:
    it is still the instance's failure (only a try that earlier ones cut short is not)."""
    fleet = await fleet_of(1)
    (hung,) = fleet.servers
    hung.state.delay = 30.0
    client = fleet.client(request_timeout=0.6, deadline=0.6)
    await client.start()
    with pytest.raises(NoInstanceAvailable):
        await client.request("GET", "/chats")
    (stats,) = client.stats()
    assert (stats.failures, stats.ejections) == (1, 1)


async def test_an_answer_past_the_bound_is_a_failed_try_and_the_read_moves_on(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    """Found in review: an instance's answer was read whole, whatever its size (500 MB
    from a registered instance took the gateway 1 GB). Past ANSWER_MAX_BYTES it is a
    failed try: the instance is ejected and the read goes to the next one."""
    fleet = await fleet_of(2)
    flood = fleet.servers[0]
    flood.state.answer_bytes = ANSWER_MAX_BYTES + 1
    client = fleet.client(cooldown=60)
    await client.start()
    served = [(await client.request("GET", "/chats")).instance_id for _ in range(6)]
    assert served == [fleet.servers[1].state.id] * 6
    assert flood.state.hits["/chats"] == 1  # one try, then it sat out
    stats = {s.id: s for s in client.stats()}
    assert stats[flood.state.id].ejections == 1 and not stats[flood.state.id].healthy


async def test_an_answer_refusing_the_client_moves_on_like_a_refused_status(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    """`refuses` (the gateway's: a worker lacking a route, being of another version) makes
    an answer below 500 the instance's failure; found in review, such a 404 reached the
    client, and the worker was neither ejected nor passed over."""
    fleet = await fleet_of(2)
    old = fleet.servers[0]
    old.state.missing.add("/followed")
    client = fleet.client(refuses=refuses_gateway, cooldown=60)
    await client.start()
    served = [(await client.request("GET", "/followed")).instance_id for _ in range(4)]
    assert served == [fleet.servers[1].state.id] * 4
    assert old.state.hits["/followed"] == 1  # one try, then it sat out
    stats = {s.id: s for s in client.stats()}
    assert stats[old.state.id].ejections == 1


async def test_a_success_whose_body_is_not_understood_moves_on_and_ejects(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    """`readable` (the gateway's: the body parses as the route's answer) makes a 200 that
    it rejects the instance's failure. Found in review: a worker answering 200 with HTML
    was counted a success, kept its share of reads, and each of them failed with 5000."""
    fleet = await fleet_of(2)
    broken = fleet.servers[0]
    broken.state.garbled = True
    client = fleet.client(cooldown=60)
    await client.start()

    def readable(body: bytes) -> bool:
        return body.startswith(b"{")

    answers = [await client.request("GET", "/chats", readable=readable) for _ in range(4)]
    assert {a.instance_id for a in answers} == {fleet.servers[1].state.id}
    assert broken.state.hits["/chats"] == 1  # one try, then it sat out
    assert {s.id: s for s in client.stats()}[broken.state.id].ejections == 1
    with pytest.raises(ValueError):  # a POST that reached an instance is never moved on
        await client.request("POST", "/chats", json={}, idempotent=False, readable=readable)


async def test_a_request_every_handler_fails_on_ejects_nobody(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    """A read that hits a bug in every instance's handler (500, 5000) is tried on each
    and answered with the last 5000; nobody is ejected, so other reads carry on. Counted
    as the instances' failure, one such read ejected all three for a cool-down (listed
    since stop 44)."""
    fleet = await fleet_of(3)
    for server in fleet.servers:
        server.state.faulty.add("/deadly")
    client = fleet.client(faulted=handler_failed, faults_to_eject=3, cooldown=60)
    await client.start()
    for _ in range(10):  # more than faults_to_eject, each instance serving a read between
        answer = await client.request("GET", "/deadly")
        assert answer.status == 500 and answer.json()["code"] == "5000"
        served = {(await client.request("GET", "/chats")).instance_id for _ in range(3)}
        assert len(served) == 3
    assert [s.state.hits["/deadly"] for s in fleet.servers] == [10, 10, 10]
    stats = client.stats()
    assert all(s.healthy and s.ejections == 0 and s.failures == 10 for s in stats), stats
    with pytest.raises(OutcomeUnknown, match="handler failed"):  # a POST is never moved on
        await client.request("POST", "/deadly", json={}, idempotent=False)
    assert sum(s.state.hits["/deadly"] for s in fleet.servers) == 31


async def test_an_instance_whose_handlers_keep_failing_is_ejected_in_the_end(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    """An instance that answers 5000 to everything (a broken process) is not the
    request's doing: at the `faults_to_eject`-th fault in a row it sits out, and every
    read meanwhile was answered by its peer."""
    fleet = await fleet_of(2)
    broken, peer = fleet.servers
    broken.state.faulty.add("/chats")
    client = fleet.client(faulted=handler_failed, faults_to_eject=3, cooldown=60)
    await client.start()
    served = [(await client.request("GET", "/chats")).instance_id for _ in range(12)]
    assert served == [peer.state.id] * 12
    assert broken.state.hits["/chats"] == 3
    stats = {s.id: s for s in client.stats()}
    assert stats[broken.state.id].ejections == 1 and not stats[broken.state.id].healthy


async def test_a_health_check_answered_with_a_fault_ejects_at_once(
    fleet_of: Callable[[int], Awaitable[Fleet]],
) -> None:
    """A health check (`healthy`) asks whether the instance is well: a 5000 says it is
    not, whatever the request, so it ejects as any 5xx does."""
    fleet = await fleet_of(1)
    (server,) = fleet.servers
    server.state.faulty.add("/health")
    client = fleet.client(faulted=handler_failed, faults_to_eject=3, cooldown=60)
    await client.start()
    with pytest.raises(NoInstanceAvailable, match="HTTP 500"):
        await client.request("GET", "/health", healthy=lambda body: True)
    (stats,) = client.stats()
    assert (stats.failures, stats.ejections, stats.healthy) == (1, 1, False)
