"""The whole HTTP edge with hand-written fakes behind it: routes, errors, auth, writes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.errors import ErrorCode
from contracts.ids import new_id
from gateway.app import create_app
from gateway.settings import GatewaySettings
from tests.support.gateway_fakes import World
from tests.support.waiting import eventually

OPENAPI = Path(__file__).resolve().parents[2] / "gateway" / "openapi.json"


def _settings(**overrides: Any) -> GatewaySettings:
    return GatewaySettings(dialogue_env="local", max_body_bytes=2048, **overrides)


@pytest.fixture
async def world() -> World:
    return World()


@pytest.fixture
async def client(world: World) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = create_app(_settings(signin_max_failures=3), adapters=world.adapters)
    async with TestClient(TestServer(app)) as client:
        yield client


async def _error(response: Any, code: ErrorCode) -> dict[str, Any]:
    body: dict[str, Any] = await response.json()
    assert (response.status, body["object"], body["code"]) == (code.status, "error", code.value)
    assert body["message"]
    return body


async def _sign_up(client: TestClient[web.Request, web.Application], name: str) -> str:
    body = {"username": name, "password": "secret1", "passwordConfirm": "secret1", "gender": "m"}
    response = await client.post("/v1/auth/sign-up", json=body)
    assert response.status == 201, await response.text()
    token: str = (await response.json())["token"]
    return token


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_unknown_route_wrong_method_bad_json_and_big_body(client: Any) -> None:
    await _error(await client.get("/nope"), ErrorCode.NOT_FOUND)
    await _error(await client.get("/v1/chats/x/y/z"), ErrorCode.NOT_FOUND)
    response = await client.delete("/v1/chats")
    await _error(response, ErrorCode.METHOD_NOT_ALLOWED)
    assert "POST" in response.headers["Allow"]
    await _error(await client.post("/v1/auth/sign-in", data=b"{nope"), ErrorCode.MALFORMED)
    await _error(await client.post("/v1/auth/sign-in", data=b"[1]"), ErrorCode.MALFORMED)
    await _error(await client.post("/v1/auth/sign-in", data=b"x" * 4096), ErrorCode.TOO_LARGE)


async def test_request_id_is_echoed_or_generated(client: Any) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    generated = (await client.get("/nope")).headers["X-Request-ID"]
    assert len(generated) == 32


async def test_auth_flow_and_token_errors(client: Any, world: World) -> None:
    token = await _sign_up(client, "alice")
    me = await client.get("/v1/users/me", headers=_auth(token))
    assert (await me.json())["username"] == "alice"
    await _error(await client.get("/v1/users/me"), ErrorCode.NO_TOKEN)
    await _error(await client.get("/v1/users/me", headers=_auth(token + "x")), ErrorCode.BAD_TOKEN)
    body = {"username": "alice", "password": "secret1", "passwordConfirm": "secret1", "gender": "f"}
    await _error(await client.post("/v1/auth/sign-up", json=body), ErrorCode.USERNAME_TAKEN)
    signed = await client.post(
        "/v1/auth/sign-in", json={"username": "alice", "password": "secret1"}
    )
    assert set(await signed.json()) == {"object", "token", "userId", "username", "expiresAt"}


async def test_sign_in_throttle_is_per_username(client: Any) -> None:
    await _sign_up(client, "alice")
    await _sign_up(client, "bobby")
    wrong = {"username": "alice", "password": "wrong!!"}
    for _ in range(3):
        await _error(await client.post("/v1/auth/sign-in", json=wrong), ErrorCode.BAD_TOKEN)
    locked = await client.post("/v1/auth/sign-in", json={**wrong, "password": "secret1"})
    await _error(locked, ErrorCode.TOO_MANY_ATTEMPTS)
    assert int(locked.headers["Retry-After"]) > 0
    bob = await client.post("/v1/auth/sign-in", json={"username": "bobby", "password": "secret1"})
    assert bob.status == 200


async def test_chat_and_message_flow(client: Any, world: World) -> None:
    a, b, c = [await _sign_up(client, n) for n in ("alice", "bobby", "carol")]
    created = await client.post("/v1/chats", json={"users": [1, 2]}, headers=_auth(a))
    assert created.status == 201
    cid = (await created.json())["id"]
    posted = await client.post(f"/v1/chats/{cid}/messages", json={"txt": "hi"}, headers=_auth(b))
    assert posted.status == 202
    message = await posted.json()
    assert message["uid"] == 2 and message["cid"] == cid and message["text"] == "hi"
    assert world.bus.records[0].id == message["id"]
    listed = await client.get(f"/v1/chats/{cid}/messages?limit=10", headers=_auth(a))
    assert [m["id"] for m in (await listed.json())["data"]] == [message["id"]]
    chats = await (await client.get("/v1/chats", headers=_auth(a))).json()
    assert chats["object"] == "list" and chats["data"][0]["id"] == cid
    for call in (
        client.get(f"/v1/chats/{cid}", headers=_auth(c)),
        client.post(f"/v1/chats/{cid}/messages", json={"txt": "x"}, headers=_auth(c)),
        client.put(f"/v1/chats/{cid}", json={"users": [3]}, headers=_auth(c)),
        client.get(f"/v1/chats/{cid}/messages", headers=_auth(c)),
    ):
        await _error(await call, ErrorCode.NOT_MEMBER)
    added = await client.put(f"/v1/chats/{cid}", json={"users": [3]}, headers=_auth(a))
    assert (await added.json())["users"] == [1, 2, 3]


async def test_chat_creation_errors(client: Any) -> None:
    a = await _sign_up(client, "alice")
    await _sign_up(client, "bobby")
    h = _auth(a)
    await _error(
        await client.post("/v1/chats", json={"users": [1]}, headers=h), ErrorCode.TOO_FEW_USERS
    )
    await _error(
        await client.post("/v1/chats", json={"users": [2, 3]}, headers=h), ErrorCode.FORBIDDEN
    )
    await _error(
        await client.post("/v1/chats", json={"users": [1, "x"]}, headers=h), ErrorCode.BAD_USER_ID
    )
    unknown = await _error(
        await client.post("/v1/chats", json={"users": [1, 99, 98]}, headers=h), ErrorCode.NOT_FOUND
    )
    assert "98, 99" in unknown["message"]
    await _error(await client.get("/v1/chats/nope", headers=h), ErrorCode.BAD_CHAT_ID)
    await _error(await client.get(f"/v1/chats/{new_id()}", headers=h), ErrorCode.NOT_FOUND)
    await _error(await client.get("/v1/chats?limit=0", headers=h), ErrorCode.BAD_PAGING)


async def test_idempotency_key_returns_same_message_and_produces_once(
    client: Any, world: World
) -> None:
    a = await _sign_up(client, "alice")
    await _sign_up(client, "bobby")
    cid = (await (await client.post("/v1/chats", json={"users": [1, 2]}, headers=_auth(a))).json())[
        "id"
    ]
    headers = {**_auth(a), "Idempotency-Key": "retry-1"}
    url = f"/v1/chats/{cid}/messages"
    answers = await asyncio.gather(
        *(client.post(url, json={"txt": "once"}, headers=headers) for _ in range(5))
    )
    ids = {(await r.json())["id"] for r in answers}
    assert len(ids) == 1 and all(r.status == 202 for r in answers)
    assert len(world.bus.records) == 1
    other = await client.post(url, json={"txt": "changed"}, headers=headers)
    await _error(other, ErrorCode.MALFORMED)


async def test_keys_forgotten_before_their_time_are_counted_in_metrics(world: World) -> None:
    app = create_app(_settings(idempotency_max_keys=2), adapters=world.adapters)
    async with TestClient(TestServer(app)) as client:
        a = await _sign_up(client, "alice")
        await _sign_up(client, "bobby")
        chat = await client.post("/v1/chats", json={"users": [1, 2]}, headers=_auth(a))
        url = f"/v1/chats/{(await chat.json())['id']}/messages"
        for n in range(3):
            headers = {**_auth(a), "Idempotency-Key": f"key-{n}"}
            assert (await client.post(url, json={"txt": "hi"}, headers=headers)).status == 202
        admin = {"Authorization": "Bearer local-only-admin-token"}
        text = await (await client.get("/metrics", headers=admin)).text()
    assert "gateway_idempotency_keys 2.0" in text
    assert "gateway_idempotency_evicted_early_total 1.0" in text


async def test_failed_send_is_5031_and_retry_with_key_keeps_the_id(
    client: Any, world: World
) -> None:
    a = await _sign_up(client, "alice")
    await _sign_up(client, "bobby")
    cid = (await (await client.post("/v1/chats", json={"users": [1, 2]}, headers=_auth(a))).json())[
        "id"
    ]
    url, headers = f"/v1/chats/{cid}/messages", {**_auth(a), "Idempotency-Key": "k"}
    world.bus.down = True
    await _error(
        await client.post(url, json={"txt": "x"}, headers=headers), ErrorCode.BUS_UNAVAILABLE
    )
    await _error(
        await client.post(url, json={"txt": "x"}, headers=_auth(a)), ErrorCode.BUS_UNAVAILABLE
    )
    ready = await client.get("/ready")
    assert ready.status == 503 and not (await ready.json())["checks"]["kafka"]["ok"]
    world.bus.down = False
    first = await client.post(url, json={"txt": "x"}, headers=headers)
    again = await client.post(url, json={"txt": "x"}, headers=headers)
    assert first.status == again.status == 202
    assert (await first.json())["id"] == (await again.json())["id"]
    assert len(world.bus.records) == 1

    async def ready_status() -> int:
        return (await client.get("/ready")).status

    await eventually(ready_status, lambda status: status == 200, what="ready again")  # 1 s


async def test_unexpected_error_is_a_json_5000(client: Any, world: World) -> None:
    a = await _sign_up(client, "alice")
    world.workers.crash = True
    await _error(await client.get(f"/v1/chats/{new_id()}", headers=_auth(a)), ErrorCode.INTERNAL)
    world.users.down = True
    await _error(
        await client.get("/v1/users/me", headers=_auth(a)), ErrorCode.USER_STORE_UNAVAILABLE
    )


async def test_ops_routes(client: Any) -> None:
    await client.get("/health")
    await _error(await client.get("/metrics"), ErrorCode.NO_TOKEN)
    await _error(await client.get("/metrics", headers=_auth("wrong")), ErrorCode.BAD_TOKEN)
    admin_token = _settings().admin_secret() or ""
    metrics = await (await client.get("/metrics", headers=_auth(admin_token))).text()
    assert 'gateway_http_requests_total{method="GET",route="/health",status="200"}' in metrics
    assert 'gateway_upstream_requests_total{instance="w1"} 3.0' in metrics
    await _error(await client.get("/v1/admin/instances"), ErrorCode.NO_TOKEN)
    await _error(
        await client.get("/v1/admin/instances", headers=_auth("wrong")), ErrorCode.BAD_TOKEN
    )
    settings = _settings()
    admin = await client.get("/v1/admin/instances", headers=_auth(settings.admin_secret() or ""))
    assert (await admin.json())["data"][0] == {
        "object": "instance",
        "id": "w1",
        "url": "http://127.0.0.1:1",
        "requests": 3,
        "failures": 0,
        "ejections": 0,
        "healthy": True,
    }
    served = await (await client.get("/v1/openapi.json")).json()
    assert served == json.loads(OPENAPI.read_text())


def test_every_registered_route_is_in_the_openapi_document() -> None:
    doc = json.loads(OPENAPI.read_text())
    app = create_app(_settings(), adapters=World().adapters)
    registered = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert registered == documented


async def test_users_are_looked_up_by_exact_name_or_id(client: Any) -> None:
    alice, bob = await _sign_up(client, "Alice1"), await _sign_up(client, "bobby")
    me = await (await client.get("/v1/users/me", headers=_auth(alice))).json()
    response = await client.get(
        "/v1/users?username=BOBBY&username=nobody&username=alice1&username=a%20b",
        headers=_auth(bob),
    )
    body = await response.json()
    assert response.status == 200 and body["nextCursor"] is None
    assert [u["username"] for u in body["data"]] == ["bobby", "Alice1"]  # in the order asked
    assert set(body["data"][0]) == {"object", "id", "username"}  # no gender, no dates
    by_id = await (await client.get(f"/v1/users?id={me['id']}&id=999", headers=_auth(bob))).json()
    assert by_id["data"] == [{"object": "user", "id": me["id"], "username": "Alice1"}]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", ErrorCode.MALFORMED),
        ("?id=1&username=bob", ErrorCode.MALFORMED),
        ("?" + "&".join(f"id={i}" for i in range(1, 52)), ErrorCode.MALFORMED),
        ("?id=0", ErrorCode.BAD_USER_ID),
        ("?id=abc", ErrorCode.BAD_USER_ID),
        (f"?id={2**63}", ErrorCode.BAD_USER_ID),
    ],
)
async def test_a_bad_look_up_is_a_4xx(client: Any, query: str, code: ErrorCode) -> None:
    token = await _sign_up(client, "looker")
    await _error(await client.get(f"/v1/users{query}", headers=_auth(token)), code)


async def test_look_ups_need_a_token(client: Any) -> None:
    await _error(await client.get("/v1/users?username=bob"), ErrorCode.NO_TOKEN)


@given(
    st.lists(st.text(max_size=300), max_size=60),
    st.lists(st.text(max_size=30), max_size=60),
)
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_look_up_query_is_answered_without_a_5xx(names: list[str], ids: list[str]) -> None:
    async def run() -> int:
        world = World()
        app = create_app(_settings(), adapters=world.adapters)
        async with TestClient(TestServer(app)) as client:
            token = await _sign_up(client, "fuzzer")
            params = [("username", n) for n in names] + [("id", i) for i in ids]
            response = await client.get("/v1/users", params=params, headers=_auth(token))
            body = await response.json()
            assert response.status == 200 or body["code"] in ("4000", "4002"), body
            return response.status

    asyncio.run(run())


async def test_a_paging_parameter_given_twice_is_refused_by_the_routes(
    client: TestClient[web.Request, web.Application],
) -> None:
    headers = _auth(await _sign_up(client, "twice"))
    cid = new_id()
    for path in ("/v1/chats?limit=5&limit=abc", f"/v1/chats/{cid}/messages?limit=5&limit=6"):
        body = await _error(await client.get(path, headers=headers), ErrorCode.BAD_PAGING)
        assert "limit is given more than once" in body["message"]
