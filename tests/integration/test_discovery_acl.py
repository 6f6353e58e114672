"""Discovery with Consul ACLs on (a private agent, default deny), and the gateway's rule
that only instances registered as dialogue workers ever get its credentials."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from discovery import (
    WORKER_META_APP_ID,
    WORKER_TAG,
    BalancedClient,
    ConsulUnavailable,
    HealthReport,
    Registrar,
    Registration,
    ServiceWatch,
)
from infra.dev.platform import SERVICE, DevPlatform
from infra.dev.settings import DevSettings
from infra.local import LocalSettings
from infra.processes.stub import StubServer
from tests.support.acl_consul import AclConsul, acl_consul
from tests.support.waiting import eventually

TOKEN_HEADER = {"Authorization": "Entrypoint internal-secret"}


async def _passing() -> HealthReport:
    return HealthReport.passing()


@pytest.fixture(scope="module")
async def consul(
    infra: LocalSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[AclConsul]:
    async with acl_consul(tmp_path_factory.mktemp("acl-consul"), infra.cache_dir) as agent:
        yield agent


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    server = StubServer("acl-stub")
    await server.start()
    yield server
    await server.stop()


def _registration(
    stub: StubServer,
    service: str,
    tags: tuple[str, ...] = (),
    meta: dict[str, str] | None = None,
) -> Registration:
    return Registration(
        stub.state.id, "127.0.0.1", stub.port, "1", service=service, tags=tags, meta=meta or {}
    )


async def test_registration_needs_a_token_with_service_write(
    consul: AclConsul, stub: StubServer, unique: Callable[[str], str]
) -> None:
    service = unique("acl")
    read_only = consul.token(service, "read")
    for token in (None, read_only):
        refused = Registrar(consul.url, _registration(stub, service), _passing, token=token)
        with pytest.raises(ConsulUnavailable, match=r"403|Permission denied|ACL not found"):
            await refused.start()
    registrar = Registrar(
        consul.url, _registration(stub, service), _passing, token=consul.token(service, "write")
    )
    await registrar.start()
    try:
        anonymous = ServiceWatch(consul.url, service)
        reader = ServiceWatch(consul.url, service, token=read_only)
        for watch in (anonymous, reader):
            await watch.start()
        try:
            await eventually(lambda: reader.instances, what="the instance, seen with a token")
            await anonymous.wait_ready(10)
            assert anonymous.instances == ()  # default deny: nothing without a token
        finally:
            for watch in (anonymous, reader):
                await watch.stop()
    finally:
        await registrar.stop()


async def test_the_internal_token_goes_only_to_instances_registered_as_workers(
    consul: AclConsul, unique: Callable[[str], str]
) -> None:
    service = unique("tagged")
    writer = consul.token(service, "write")
    names = ("worker", "untagged", "no-meta", "other-app")
    stubs = [StubServer(f"{name}-{service}") for name in names]
    app = {WORKER_META_APP_ID: "dialogue-worker"}
    extras: list[tuple[tuple[str, ...], dict[str, str]]] = [
        ((WORKER_TAG,), app),  # a worker
        ((), app),  # no tag
        ((WORKER_TAG,), {}),  # no app_id
        ((WORKER_TAG,), {WORKER_META_APP_ID: "someone-else"}),  # another group's app id
    ]
    registrars = []
    for server in stubs:
        await server.start()
    try:
        for server, (tags, meta) in zip(stubs, extras, strict=True):
            registration = _registration(server, service, tags, meta)
            registrar = Registrar(consul.url, registration, _passing, token=writer)
            await registrar.start()
            registrars.append(registrar)
        watch = ServiceWatch(
            consul.url,
            service,
            token=consul.token(service, "read"),
            require_tag=WORKER_TAG,
            require_meta={WORKER_META_APP_ID: "dialogue-worker"},
        )
        client = BalancedClient(watch, headers=TOKEN_HEADER)
        await watch.start()
        await client.start()
        try:
            await watch.wait_ready(10)
            await eventually(lambda: [i.id for i in watch.instances], lambda ids: len(ids) == 1)
            answers = await asyncio.gather(*(client.request("GET", "/echo") for _ in range(12)))
        finally:
            await client.stop()
            await watch.stop()
    finally:
        for registrar in registrars:
            await registrar.stop()
        for server in stubs:
            await server.stop()
    assert {a.instance_id for a in answers} == {stubs[0].state.id}
    assert all(a.json()["authorization"] == TOKEN_HEADER["Authorization"] for a in answers)
    assert all(stub.state.hits["/echo"] == 0 for stub in stubs[1:])


async def test_make_devs_consul_probes_use_dev_consul_token(
    consul: AclConsul, stub: StubServer, infra: LocalSettings
) -> None:
    """`make dev` against an agent with ACLs: its readiness probes see the workers only
    with DEV_CONSUL_TOKEN (sent as a bearer token, which Consul accepts as its own)."""
    registrar = Registrar(
        consul.url, _registration(stub, SERVICE), _passing, token=consul.token(SERVICE, "write")
    )
    await registrar.start()
    try:
        env = {"LOCAL_RUN_DIR": str(infra.run_dir), "LOCAL_CACHE_DIR": str(infra.cache_dir)}
        env["DEV_CONSUL_URL"] = consul.url
        anonymous = DevPlatform(DevSettings.from_env(env))
        reader = DevPlatform(
            DevSettings.from_env(env | {"DEV_CONSUL_TOKEN": consul.token(SERVICE, "read")})
        )
        await eventually(
            lambda: stub.state.id in reader.passing(), what="the instance, seen with the token"
        )
        assert anonymous.passing() == {}  # default deny
    finally:
        await registrar.stop()


async def test_the_given_token_counts_over_consul_http_token_in_the_environment(
    consul: AclConsul,
    stub: StubServer,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """py-consul sends CONSUL_HTTP_TOKEN instead of the token it is given (an empty one:
    none at all), so a stray variable made the gateway see no worker at all."""
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "")
    service = unique("env-token")
    registrar = Registrar(
        consul.url, _registration(stub, service), _passing, token=consul.token(service, "write")
    )
    await registrar.start()
    watch = ServiceWatch(consul.url, service, token=consul.token(service, "read"))
    await watch.start()
    try:
        await eventually(lambda: watch.instances, what="the instance, seen with the token")
    finally:
        await watch.stop()
        await registrar.stop()
