"""Token refresh as a client and an operator drive it: `python -m gateway` on the real
MariaDB (and Kafka and Consul, which a refresh does not use: no worker is needed, so
none is started), `python -m gateway.users rename` as the operator runs it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import jwt
import pytest

from dialogue_worker.adapters.topics import ensure_topics
from infra.local import LocalSettings
from infra.processes.gateway import (
    JWT_SECRET,
    GatewayProcess,
    scratch_database,
    serving_gateway,
    standalone_env,
    users_command,
)
from tests.support.api_user import Api as ThinApi

ISSUER = "dialogue-gateway"  # standalone_env leaves JWT_ISSUER at its default
SESSION_MAX_AGE = 3600  # the least it may be: JWT_TTL's default
REFRESHES = 5  # RATE_REFRESHES_PER_USER: 5/3600


@pytest.fixture(scope="module")
async def database(infra: LocalSettings, run_id: str) -> AsyncIterator[str]:
    async with scratch_database(infra, f"gw_refresh_{run_id}") as name:
        yield name


@pytest.fixture(scope="module")
async def gateway(
    infra: LocalSettings, database: str, unique: Callable[[str], str]
) -> AsyncIterator[GatewayProcess]:
    env = standalone_env(infra, database, unique("refresh"))
    # The topic it would post to exists, or aiokafka logs an error at each metadata refresh.
    await ensure_topics(infra.kafka_bootstrap, [env["TOPIC"]], partitions=1)
    env |= {
        "SESSION_MAX_AGE": str(SESSION_MAX_AGE),
        "RATE_REFRESHES_PER_USER": f"{REFRESHES}/3600",
    }
    async with serving_gateway(env) as process:
        yield process
    assert process.error_lines() == [], process.tail()


class Api(ThinApi):
    async def refresh(self, token: str | None, **kwargs: Any) -> tuple[int, Any]:
        return await self.call("POST", "/v1/auth/refresh", token, **kwargs)

    async def me(self, token: str) -> tuple[int, Any]:
        return await self.call("GET", "/v1/users/me", token)


@pytest.fixture
async def api(gateway: GatewayProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, gateway.url)


def _name(unique: Callable[[str], str], prefix: str) -> str:
    return prefix + unique("")[-12:].replace("-", "")


def _claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token, JWT_SECRET, algorithms=["HS256"], issuer=ISSUER, options={"verify_iat": False}
    )
    return claims


def _mint(user_id: int, **claims: object) -> str:
    """A token as the gateway signs them (its secret is the test's), with `claims`."""
    now = int(time.time())
    base = {"sub": str(user_id), "user_id": user_id, "iss": ISSUER, "iat": now, "exp": now + 600}
    return jwt.encode({**base, **claims}, JWT_SECRET, algorithm="HS256")


def expect(answer: tuple[int, Any], code: str) -> str:
    status, body = answer
    assert (status, body["object"], body["code"]) == (int(code[:3]), "error", code), body
    message: str = body["message"]
    return message


async def test_a_refreshed_token_serves_and_the_old_one_still_does(
    api: Api, unique: Callable[[str], str]
) -> None:
    name = _name(unique, "ref")
    signed_up = await api.sign_up(name)
    status, refreshed = await api.refresh(signed_up["token"])
    assert status == 200, refreshed
    assert set(refreshed) == {"object", "token", "userId", "username", "expiresAt"}
    assert (refreshed["object"], refreshed["userId"]) == ("token", signed_up["userId"])
    assert refreshed["username"] == name
    assert refreshed["expiresAt"] >= signed_up["expiresAt"]
    assert _claims(refreshed["token"])["auth_time"] == _claims(signed_up["token"])["auth_time"]
    for token in (refreshed["token"], signed_up["token"]):
        status, me = await api.me(token)
        assert (status, me["id"], me["username"]) == (200, signed_up["userId"], name)
    status, again = await api.refresh(refreshed["token"], json={})  # a body is ignored
    assert (
        status == 200
        and _claims(again["token"])["auth_time"] == _claims(signed_up["token"])["auth_time"]
    )


async def test_a_renamed_user_gets_the_new_name_at_the_next_refresh(
    api: Api, infra: LocalSettings, database: str, unique: Callable[[str], str]
) -> None:
    old, new = _name(unique, "old"), _name(unique, "new")
    token = await api.sign_up(old)
    done = await asyncio.to_thread(
        users_command, infra, database, "rename", str(token["userId"]), new
    )
    assert done.returncode == 0, done
    status, refreshed = await api.refresh(token["token"])
    assert (status, refreshed["username"]) == (200, new), refreshed
    assert _claims(refreshed["token"])["username"] == new
    status, me = await api.me(refreshed["token"])
    assert (status, me["username"]) == (200, new)


async def test_refresh_refuses_what_is_not_a_live_session(
    api: Api, unique: Callable[[str], str]
) -> None:
    user = await api.sign_up(_name(unique, "bad"))
    uid, now = user["userId"], int(time.time())
    expect(await api.refresh(None), "4010")
    expect(await api.refresh("garbage"), "4011")
    expect(await api.refresh(user["token"] + "x"), "4011")
    expired = _mint(uid, iat=now - 7200, exp=now - 3600, auth_time=now - 7200)
    assert "expired" in expect(await api.refresh(expired), "4011")
    too_old = _mint(uid, iat=now - 60, exp=now + 60, auth_time=now - SESSION_MAX_AGE)
    assert expect(await api.refresh(too_old), "4011") == "session expired: sign in again"
    status, _ = await api.me(too_old)  # ordinary routes take it until its exp
    assert status == 200
    gone = _mint(10**12, username="nobody")
    assert "no longer exists" in expect(await api.refresh(gone), "4011")


async def test_a_token_without_auth_time_refreshes_from_its_iat(
    api: Api, unique: Callable[[str], str]
) -> None:
    """A token signed before this change: still accepted everywhere, and its session
    counts from its `iat`."""
    user = await api.sign_up(_name(unique, "legacy"))
    iat = int(time.time()) - 60
    legacy = _mint(user["userId"], username="legacy", iat=iat)
    assert (await api.me(legacy))[0] == 200
    status, refreshed = await api.refresh(legacy)
    assert status == 200, refreshed
    assert _claims(refreshed["token"])["auth_time"] == iat
    assert refreshed["expiresAt"] == iat + SESSION_MAX_AGE  # no token outlives the session


async def test_refreshes_are_limited_per_user(api: Api, unique: Callable[[str], str]) -> None:
    looping, other = (
        await api.sign_up(_name(unique, "loop")),
        await api.sign_up(_name(unique, "calm")),
    )
    for _ in range(REFRESHES):
        assert (await api.refresh(looping["token"]))[0] == 200
    async with api.http.post(
        api.url + "/v1/auth/refresh", headers={"Authorization": f"Bearer {looping['token']}"}
    ) as resp:
        body = await resp.json()
        assert (resp.status, body["code"]) == (429, "4290"), body
        assert int(resp.headers["Retry-After"]) >= 1
    assert (await api.refresh(other["token"]))[0] == 200
