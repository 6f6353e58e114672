"""The HTTP edge's defences, with fakes behind it: rate limits, sign-in throttling by
canonical name and address, slow bodies, and the headers every answer carries."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.errors import ErrorCode
from gateway.app import create_app
from gateway.errors import GatewayError
from gateway.settings import GatewaySettings
from tests.support.gateway_fakes import World
from tests.support.usernames import ISSUE_VARIANTS, variants

Client = TestClient[web.Request, web.Application]
PASSWORD = "secret1"
LOOSE = "1000000/1"


def _settings(**overrides: Any) -> GatewaySettings:
    rates = {
        name: LOOSE
        for name in GatewaySettings.model_fields
        if name.startswith("rate_") and name != "rate_limit_max_keys"
    }
    return GatewaySettings.model_validate(
        {"dialogue_env": "local", "max_body_bytes": 2048, **rates, **overrides}
    )


@asynccontextmanager
async def _client(world: World, **overrides: Any) -> AsyncIterator[Client]:
    # The app's clock stands still: a Retry-After is then exact however slow the machine.
    now = time.time()
    app = create_app(_settings(**overrides), adapters=world.adapters, clock=lambda: now)
    async with TestClient(TestServer(app)) as client:
        yield client


async def _code(response: Any) -> str:
    body = await response.json()
    assert response.status == int(body["code"][:3])
    return str(body["code"])


async def _sign_up(client: Client, name: str) -> str:
    body = {"username": name, "password": PASSWORD, "passwordConfirm": PASSWORD, "gender": "f"}
    response = await client.post("/v1/auth/sign-up", json=body)
    assert response.status == 201, await response.text()
    return str((await response.json())["token"])


async def _sign_in(client: Client, name: str, password: str = PASSWORD) -> Any:
    return await client.post("/v1/auth/sign-in", json={"username": name, "password": password})


async def _lock_out(client: Client, name: str, failures: int) -> None:
    for _ in range(failures):
        assert await _code(await _sign_in(client, name, "wrong-password")) == "4011"
    locked = await _sign_in(client, name)
    assert await _code(locked) == "4290" and int(locked.headers["Retry-After"]) >= 1


async def test_issue_variants_of_a_locked_out_name_get_4290_or_4000() -> None:
    world = World()
    async with _client(world, signin_max_failures=3) as client:
        await _sign_up(client, "alice")
        await _lock_out(client, "alice", 3)
        wide, bold = "\uff41\uff4c\uff49\uff43\uff45", "\U0001d41alice"
        for variant in [*ISSUE_VARIANTS, "ALICE", "Alice", bold, wide]:
            response = await _sign_in(client, variant)
            assert await _code(response) in ("4290", "4000"), variant


@pytest.fixture(scope="module")
async def locked() -> AsyncIterator[tuple[Client, World]]:
    world = World()
    async with _client(world, signin_max_failures=3) as client:
        await _sign_up(client, "alice")
        await _lock_out(client, "alice", 3)
        yield client, world


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(variant=variants("alice"))
async def test_no_variant_of_a_locked_out_name_signs_in(
    locked: tuple[Client, World], variant: str
) -> None:
    client, world = locked
    before = len(world.users.lookups)
    code = await _code(await _sign_in(client, variant))
    assert code in ("4290", "4000"), repr(variant)
    assert len(world.users.lookups) == before  # refused before the user store


@pytest.mark.parametrize("name", ["alice\u0000", " alice", "al\u200bice", "ali\u0441e", "x" * 300])
async def test_sign_in_refuses_what_sign_up_refuses_without_the_user_store(name: str) -> None:
    world = World()
    async with _client(world) as client:
        assert await _code(await _sign_in(client, name)) == "4000"
    assert world.users.lookups == []


async def test_an_address_that_fails_too_often_is_locked_out_for_every_name() -> None:
    world = World()
    async with _client(world, signin_address_max_failures=4, signin_max_failures=100) as client:
        await _sign_up(client, "bobby")
        for n in range(4):
            await _sign_in(client, f"victim{n}", "wrong-password")
        refused = await _sign_in(client, "bobby")
        assert await _code(refused) == "4290"
        assert "address" in (await refused.json())["message"]


async def test_concurrent_guesses_at_one_account_get_no_more_checks_than_the_limit() -> None:
    """Ten wrong passwords for one name at once: each waits for the check before it, so
    five are checked and the rest are refused by the lock-out they caused."""
    world = World()
    overrides = {"signin_max_failures": 5, "signin_address_max_failures": 100}
    async with _client(world, **overrides) as client:
        await _sign_up(client, "bobby")
        answers = await asyncio.gather(
            *(_sign_in(client, "bobby", f"guess-{n}") for n in range(10))
        )
        codes = sorted([await _code(a) for a in answers])
    assert codes == ["4011"] * 5 + ["4290"] * 5
    assert world.hasher.verified == 5


async def test_the_global_budget_refuses_sign_ins_once_spent() -> None:
    world = World()
    overrides = {"signin_global_max_failures": 3, "trusted_proxies": "127.0.0.0/8"}
    async with _client(world, **overrides) as client:
        await _sign_up(client, "bobby")
        for n in range(3):
            body = {"username": f"victim{n}", "password": "wrong-password"}
            headers = {"X-Forwarded-For": f"198.51.100.{n}"}
            await client.post("/v1/auth/sign-in", json=body, headers=headers)
        refused = await _sign_in(client, "bobby")
        assert await _code(refused) == "4290"
        assert "server" in (await refused.json())["message"]


async def test_sign_up_is_rate_limited_per_address() -> None:
    world = World()
    overrides = {"rate_sign_up_per_address": "2/60", "trusted_proxies": "127.0.0.1"}
    async with _client(world, **overrides) as client:
        await _sign_up(client, "user1")
        await _sign_up(client, "user2")
        body = {"username": "user3", "password": PASSWORD, "passwordConfirm": PASSWORD}
        refused = await client.post("/v1/auth/sign-up", json={**body, "gender": "m"})
        assert await _code(refused) == "4290" and refused.headers["Retry-After"] == "30"
        elsewhere = await client.post(
            "/v1/auth/sign-up",
            json={**body, "gender": "m"},
            headers={"X-Forwarded-For": "203.0.113.5"},
        )
        assert elsewhere.status == 201


async def test_sign_in_is_rate_limited_per_username_and_per_address() -> None:
    world = World()
    overrides = {"rate_sign_in_per_user": "2/60", "trusted_proxies": "127.0.0.1"}
    async with _client(world, **overrides) as client:
        await _sign_up(client, "alice")
        for _ in range(2):
            assert (await _sign_in(client, "ALICE")).status == 200
        assert await _code(await _sign_in(client, "alice")) == "4290"
        # An account's bucket is its own at each address: spending it from one address
        # (an attacker's) does not keep its owner out at another.
        elsewhere = await client.post(
            "/v1/auth/sign-in",
            json={"username": "alice", "password": PASSWORD},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        assert elsewhere.status == 200
    async with _client(World(), rate_sign_in_per_address="2/60") as client:
        for n in range(2):
            await _sign_in(client, f"someone{n}")
        assert await _code(await _sign_in(client, "someone9")) == "4290"


async def _two_users_and_a_chat(client: Client) -> tuple[dict[str, str], dict[str, str], str]:
    """Alice's and Bobby's Authorization headers, and the chat Alice made with Bobby."""
    alice, bobby = await _sign_up(client, "alice"), await _sign_up(client, "bobby")
    auth_a, auth_b = {"Authorization": f"Bearer {alice}"}, {"Authorization": f"Bearer {bobby}"}
    created = await client.post("/v1/chats", json={"users": [1, 2]}, headers=auth_a)
    return auth_a, auth_b, (await created.json())["id"]


async def test_chat_creation_and_message_posts_are_rate_limited_per_user() -> None:
    world = World()
    overrides = {"rate_chats_per_user": "1/60", "rate_messages_per_user": "2/10"}
    async with _client(world, **overrides) as client:
        auth_a, auth_b, cid = await _two_users_and_a_chat(client)
        again = await client.post("/v1/chats", json={"users": [1, 2]}, headers=auth_a)
        assert await _code(again) == "4290" and again.headers["Retry-After"] == "60"
        assert (await client.post("/v1/chats", json={"users": [1, 2]}, headers=auth_b)).ok
        url = f"/v1/chats/{cid}/messages"
        for _ in range(2):
            assert (await client.post(url, json={"txt": "hi"}, headers=auth_a)).status == 202
        refused = await client.post(url, json={"txt": "hi"}, headers=auth_a)
        assert await _code(refused) == "4290" and refused.headers["Retry-After"] == "5"
        assert (await client.post(url, json={"txt": "hi"}, headers=auth_b)).status == 202
    assert len(world.bus.records) == 3


async def test_chat_creation_and_message_posts_are_rate_limited_per_address() -> None:
    """Two users behind one address share its budget; another address has its own."""
    world = World()
    overrides = {
        "rate_chats_per_address": "1/60",
        "rate_messages_per_address": "2/10",
        "trusted_proxies": "127.0.0.1",
    }
    async with _client(world, **overrides) as client:
        alice, bobby = await _sign_up(client, "alice"), await _sign_up(client, "bobby")
        auth_a, auth_b = {"Authorization": f"Bearer {alice}"}, {"Authorization": f"Bearer {bobby}"}
        elsewhere = {"X-Forwarded-For": "203.0.113.7"}
        created = await client.post("/v1/chats", json={"users": [1, 2]}, headers=auth_a)
        cid = (await created.json())["id"]
        again = await client.post("/v1/chats", json={"users": [1, 2]}, headers=auth_b)
        assert await _code(again) == "4290" and again.headers["Retry-After"] == "60"
        other = await client.post("/v1/chats", json={"users": [1, 2]}, headers=auth_b | elsewhere)
        assert other.status == 201
        url = f"/v1/chats/{cid}/messages"
        assert (await client.post(url, json={"txt": "hi"}, headers=auth_a)).status == 202
        assert (await client.post(url, json={"txt": "hi"}, headers=auth_b)).status == 202
        refused = await client.post(url, json={"txt": "hi"}, headers=auth_a)
        assert await _code(refused) == "4290" and refused.headers["Retry-After"] == "5"
        posted = await client.post(url, json={"txt": "hi"}, headers=auth_a | elsewhere)
        assert posted.status == 202
    assert len(world.bus.records) == 3


async def test_member_additions_and_read_markers_are_rate_limited_per_user() -> None:
    """Each member addition is published to every member's socket: not free to repeat."""
    world = World()
    overrides = {"rate_members_per_user": "1/60", "rate_reads_per_user": "2/10"}
    async with _client(world, **overrides) as client:
        auth_a, auth_b, cid = await _two_users_and_a_chat(client)
        added = await client.put(f"/v1/chats/{cid}", json={"users": [2]}, headers=auth_a)
        assert added.status == 200
        again = await client.put(f"/v1/chats/{cid}", json={"users": [2]}, headers=auth_a)
        assert await _code(again) == "4290" and again.headers["Retry-After"] == "60"
        assert (
            await client.put(f"/v1/chats/{cid}", json={"users": [1]}, headers=auth_b)
        ).status == 200
        read = f"/v1/chats/{cid}/read"
        for _ in range(2):
            assert (await client.put(read, json={"seq": 0}, headers=auth_a)).status == 200
        refused = await client.put(read, json={"seq": 0}, headers=auth_a)
        assert await _code(refused) == "4290" and refused.headers["Retry-After"] == "5"
        assert (await client.put(read, json={"seq": 0}, headers=auth_b)).status == 200


async def test_a_body_that_does_not_arrive_in_time_is_4080_and_closes() -> None:
    never = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b'{"username": "ali'
        await never.wait()

    async with _client(World(), body_timeout=0.3) as client:
        response = await client.post("/v1/auth/sign-in", data=stalled())
        assert await _code(response) == "4080"
        assert response.headers.get("Connection", "").lower() == "close"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health"),
        ("GET", "/nope"),
        ("POST", "/v1/auth/sign-in"),
        ("GET", "/v1/users/me"),
        ("GET", "/v1/openapi.json"),
        ("DELETE", "/v1/chats"),
    ],
)
async def test_every_answer_carries_the_security_headers(method: str, path: str) -> None:
    async with _client(World()) as client:
        response = await client.request(method, path, data=b"{}")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Server"] == "dialogue-gateway"  # no versions
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Security-Policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        )


@given(st.binary(max_size=300))
@settings(max_examples=60)
async def test_any_body_to_the_auth_routes_is_a_json_answer(body: bytes) -> None:
    async with _client(World()) as client:
        for path in ("/v1/auth/sign-in", "/v1/auth/sign-up"):
            response = await client.post(path, data=body)
            assert response.status < 500
            assert response.content_type == "application/json"


async def _raw_get(client: Client, path: str, authorization: bytes) -> tuple[int, bytes]:
    """A GET whose Authorization header carries these bytes as they are (aiohttp's client
    would encode a str): the status and the body."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n"
            b"Authorization: Bearer " + authorization + b"\r\n\r\n"
        )
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@given(  # control characters: aiohttp's parser answers 400 before the application runs
    st.binary(min_size=1, max_size=80).filter(
        lambda b: all(c >= 0x20 and c != 0x7F for c in b) and b.strip() == b
    )
)
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_any_bytes_as_a_bearer_token_are_a_4011_answer(token: bytes) -> None:
    """Bytes that are not UTF-8 reach the gateway as lone surrogates: never a 500."""
    async with _client(World()) as client:
        for path in ("/v1/users/me", "/metrics", "/v1/admin/instances"):
            status, body = await _raw_get(client, path, token)
            assert status == 401, (path, body)
            assert json.loads(body)["code"] == "4011"


async def test_a_post_already_acknowledged_is_answered_again_while_no_worker_answers() -> None:
    """Its first answer was lost; the retry with the same key used to check membership
    first and get 5030 from workers that were away, though the gateway had the answer."""
    world = World()
    async with _client(world, membership_cache_ttl=0) as client:
        auth_a, _, cid = await _two_users_and_a_chat(client)
        url, body = f"/v1/chats/{cid}/messages", {"txt": "sent once"}
        keyed = {**auth_a, "Idempotency-Key": "k-1"}
        first = await client.post(url, json=body, headers=keyed)
        assert first.status == 202

        async def away(uid: int, cid: str) -> Any:  # as the real adapter answers then
            raise GatewayError(ErrorCode.NO_WORKER, "no dialogue worker available")

        world.workers.chat = away  # type: ignore[method-assign]
        again = await client.post(url, json=body, headers=keyed)
        assert again.status == 202 and (await again.json()) == (await first.json())
        assert len(world.bus.records) == 1
        unkeyed = await client.post(url, json=body, headers=auth_a)  # needs a worker
        assert await _code(unkeyed) == "5030" and unkeyed.headers["Retry-After"] == "2"
