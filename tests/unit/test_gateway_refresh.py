"""POST /v1/auth/refresh through the whole HTTP edge, with hand-written fakes behind it,
and the settings it adds (SESSION_MAX_AGE, RATE_REFRESHES_PER_USER)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.errors import ErrorCode
from gateway.app import create_app
from gateway.bootstrap import rate_rules
from gateway.domain.rate_limit import Rate
from gateway.domain.tokens import SESSION_MAX_AGE
from gateway.services.limits import Action, Scope
from gateway.settings import GatewaySettings
from platform_common.local import LOCAL_JWT_SECRET
from tests.support.gateway_fakes import World

ISSUER = "dialogue-gateway"  # JWT_ISSUER's default
TTL, MAX_AGE = 3600, 2 * 3600
Client = TestClient[web.Request, web.Application]


class Clock:
    """The app's clock: a whole second near the real time (which PyJWT checks `exp`
    and `iat` against), moved forward by the test."""

    def __init__(self) -> None:
        self.start = float(int(time.time()))
        self.passed = 0

    def __call__(self) -> float:
        return self.start + self.passed


@pytest.fixture
async def world() -> World:
    return World()


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def _client(world: World, clock: Clock, **settings: Any) -> Client:
    merged = {"jwt_ttl": TTL, "session_max_age": MAX_AGE, **settings}
    app = create_app(GatewaySettings(dialogue_env="local", **merged), world.adapters, clock)
    return TestClient(TestServer(app))


@pytest.fixture
async def client(world: World, clock: Clock) -> AsyncIterator[Client]:
    async with await _client(world, clock) as client:
        yield client


async def _sign_up(client: Client, name: str) -> dict[str, Any]:
    body = {"username": name, "password": "secret1", "passwordConfirm": "secret1", "gender": "f"}
    response = await client.post("/v1/auth/sign-up", json=body)
    assert response.status == 201, await response.text()
    token: dict[str, Any] = await response.json()
    return token


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _refresh(client: Client, token: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post("/v1/auth/refresh", headers=_auth(token), **kwargs)
    body: dict[str, Any] = await response.json()
    return response.status, body


def _error(answer: tuple[int, dict[str, Any]], code: ErrorCode) -> str:
    status, body = answer
    assert (status, body["object"], body["code"]) == (code.status, "error", code.value), body
    message: str = body["message"]
    return message


def _claims(token: str) -> dict[str, Any]:
    options = {"verify_exp": False, "verify_iat": False}
    claims: dict[str, Any] = jwt.decode(
        token, LOCAL_JWT_SECRET, algorithms=["HS256"], issuer=ISSUER, options=options
    )
    return claims


def _mint(user_id: int, **claims: object) -> str:
    now = int(time.time())
    base = {"sub": str(user_id), "user_id": user_id, "iss": ISSUER, "iat": now, "exp": now + 600}
    return jwt.encode({**base, **claims}, LOCAL_JWT_SECRET, algorithm="HS256")


async def test_a_refresh_is_a_new_token_of_the_same_session(client: Client, clock: Clock) -> None:
    signed_up = await _sign_up(client, "alice")
    clock.passed = 1  # within CLOCK_SKEW of the real time: the new token verifies
    status, refreshed = await _refresh(client, signed_up["token"])
    assert status == 200, refreshed
    assert set(refreshed) == {"object", "token", "userId", "username", "expiresAt"}
    assert refreshed["object"] == "token" and refreshed["token"] != signed_up["token"]
    assert (refreshed["userId"], refreshed["username"]) == (signed_up["userId"], "alice")
    assert refreshed["expiresAt"] == clock() + TTL == signed_up["expiresAt"] + 1
    claims = _claims(refreshed["token"])
    assert claims["auth_time"] == _claims(signed_up["token"])["auth_time"] == clock.start
    for token in (refreshed["token"], signed_up["token"]):  # the old one until its exp
        me = await client.get("/v1/users/me", headers=_auth(token))
        assert me.status == 200 and (await me.json())["username"] == "alice"


async def test_no_body_an_empty_object_or_a_body_that_is_not_json_are_all_fine(
    client: Client,
) -> None:
    """The route reads no body: a client may send none, `{}` or anything."""
    token = (await _sign_up(client, "alice"))["token"]
    for kwargs in ({}, {"json": {}}, {"data": b"{nope"}, {"data": b"[1]"}):
        status, body = await _refresh(client, token, **kwargs)
        assert status == 200, (kwargs, body)


async def test_a_renamed_user_gets_the_new_name_on_refresh(client: Client, world: World) -> None:
    token = await _sign_up(client, "alice")
    uid = token["userId"]
    world.users.users[uid] = dataclasses.replace(world.users.users[uid], username="Alicia")
    status, refreshed = await _refresh(client, token["token"])
    assert (status, refreshed["username"]) == (200, "Alicia")
    assert _claims(refreshed["token"])["username"] == "Alicia"


async def test_token_errors_are_those_of_every_authenticated_route(client: Client) -> None:
    token = (await _sign_up(client, "alice"))["token"]
    response = await client.post("/v1/auth/refresh")
    _error((response.status, await response.json()), ErrorCode.NO_TOKEN)
    _error(await _refresh(client, token + "x"), ErrorCode.BAD_TOKEN)
    _error(await _refresh(client, "garbage"), ErrorCode.BAD_TOKEN)
    expired = _mint(1, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    assert "expired" in _error(await _refresh(client, expired), ErrorCode.BAD_TOKEN)
    other_key = jwt.encode(_claims(token), "o" * 40, algorithm="HS256")
    _error(await _refresh(client, other_key), ErrorCode.BAD_TOKEN)


async def test_a_user_that_no_longer_exists_is_4011(client: Client, world: World) -> None:
    token = await _sign_up(client, "alice")
    del world.users.users[token["userId"]]
    message = _error(await _refresh(client, token["token"]), ErrorCode.BAD_TOKEN)
    assert "no longer exists" in message


async def test_the_user_store_down_is_5032(client: Client, world: World) -> None:
    token = (await _sign_up(client, "alice"))["token"]
    world.users.down = True
    _error(await _refresh(client, token), ErrorCode.USER_STORE_UNAVAILABLE)


async def test_a_session_is_refreshed_up_to_session_max_age_and_not_from_then_on(
    client: Client, clock: Clock
) -> None:
    """The app's clock moves; the token presented is signed at the start, so it stays
    valid for PyJWT, which reads the real clock."""
    token = (await _sign_up(client, "alice"))["token"]
    clock.passed = MAX_AGE - TTL
    status, full = await _refresh(client, token)
    assert (status, full["expiresAt"]) == (200, clock.start + MAX_AGE)
    clock.passed = MAX_AGE - 1
    status, last = await _refresh(client, token)
    assert (status, last["expiresAt"]) == (200, clock.start + MAX_AGE)
    clock.passed = MAX_AGE
    message = _error(await _refresh(client, token), ErrorCode.BAD_TOKEN)
    assert message == "session expired: sign in again"
    clock.passed = MAX_AGE + 1
    _error(await _refresh(client, token), ErrorCode.BAD_TOKEN)


async def test_a_token_from_before_auth_time_refreshes_as_a_session_begun_at_its_iat(
    client: Client, clock: Clock
) -> None:
    uid = (await _sign_up(client, "alice"))["userId"]
    iat = int(clock.start)
    legacy = _mint(uid, username="alice", iat=iat, exp=iat + 600)
    assert (await client.get("/v1/users/me", headers=_auth(legacy))).status == 200
    status, refreshed = await _refresh(client, legacy)
    assert status == 200, refreshed
    assert _claims(refreshed["token"])["auth_time"] == iat
    clock.passed = MAX_AGE
    _error(await _refresh(client, legacy), ErrorCode.BAD_TOKEN)


async def test_refreshes_are_rate_limited_per_user(world: World, clock: Clock) -> None:
    async with await _client(world, clock, rate_refreshes_per_user="2/3600") as client:
        alice, bobby = [(await _sign_up(client, n))["token"] for n in ("alice", "bobby")]
        for _ in range(2):
            assert (await _refresh(client, alice))[0] == 200
        response = await client.post("/v1/auth/refresh", headers=_auth(alice))
        message = _error((response.status, await response.json()), ErrorCode.TOO_MANY_ATTEMPTS)
        assert "token refreshes" in message and "user" in message
        assert int(response.headers["Retry-After"]) >= 1
        assert (await _refresh(client, bobby))[0] == 200  # another user's bucket
        _error(await _refresh(client, "garbage"), ErrorCode.BAD_TOKEN)  # before the limit


def test_the_settings_defaults_and_rules() -> None:
    settings = GatewaySettings(dialogue_env="local")
    assert settings.session_max_age == SESSION_MAX_AGE == 7 * 24 * 3600
    assert settings.rate_refreshes_per_user is None  # unset: 30 per JWT_TTL
    assert settings.refresh_rate == Rate(30, 3600)
    assert rate_rules(settings)[(Action.REFRESH_TOKEN, Scope.USER)] == Rate(30, 3600)
    assert (Action.REFRESH_TOKEN, Scope.ADDRESS) not in rate_rules(settings)


@pytest.mark.parametrize(
    ("ttl", "max_age", "ok"),
    [(3600, 3600, True), (3600, 3599, False), (60, 60, True), (60, 59, False), (600, 0, False)],
)
def test_session_max_age_is_at_least_one_token(ttl: int, max_age: int, ok: bool) -> None:
    if ok:
        GatewaySettings(dialogue_env="local", jwt_ttl=ttl, session_max_age=max_age)
        return
    with pytest.raises(ValidationError, match=r"(?i)session_max_age"):
        GatewaySettings(dialogue_env="local", jwt_ttl=ttl, session_max_age=max_age)


def test_the_refresh_limit_follows_the_token_lifetime_unless_set() -> None:
    short = GatewaySettings(dialogue_env="local", jwt_ttl=60)
    assert rate_rules(short)[(Action.REFRESH_TOKEN, Scope.USER)] == Rate(30, 60)
    given_rate = GatewaySettings(dialogue_env="local", jwt_ttl=60, rate_refreshes_per_user="5/60")
    assert given_rate.refresh_rate == Rate(5, 60)
    off = GatewaySettings(dialogue_env="local", jwt_ttl=60, rate_refreshes_per_user="off")
    assert off.refresh_rate.unlimited


@given(
    ttl=st.integers(min_value=60, max_value=10**9),
    capacity=st.integers(min_value=1, max_value=10**6),
    period=st.integers(min_value=1, max_value=10**10),
)
def test_a_refresh_limit_a_renewing_client_would_exhaust_is_refused(
    ttl: int, capacity: int, period: int
) -> None:
    """A bucket must give back at least one refresh per token lifetime: a client renews
    each token before it expires, and one refused renewal signs it out at expiry."""
    env = {
        "jwt_ttl": ttl,
        "session_max_age": ttl,
        "rate_refreshes_per_user": f"{capacity}/{period}",
    }
    if period / capacity <= ttl:
        assert GatewaySettings(dialogue_env="local", **env).refresh_rate == Rate(capacity, period)
        return
    with pytest.raises(ValidationError, match="RATE_REFRESHES_PER_USER") as error:
        GatewaySettings(dialogue_env="local", **env)
    assert f"JWT_TTL={ttl}" in str(error.value)
