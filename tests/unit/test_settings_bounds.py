"""Every number a service reads from its environment fits a signed 32-bit integer: one
past it is refused at start, naming the setting, and the largest one allowed works where
an unbounded one used to fail each request (found in review: `JWT_TTL` of 2**64 made every
sign-up answer 5000 after the account was created). Every text is valid UTF-8: bytes
that are not (read by Python as lone surrogates) are refused the same way (a MYSQL_USER
such as that failed the gateway's start with the MySQL driver's traceback)."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings

from dialogue_worker.settings import WorkerSettings
from gateway.app import create_app
from gateway.settings import GatewaySettings
from gateway.users import UserStoreSettings
from platform_common.settings_base import NUMBER_MAX, NUMBER_MIN
from platform_common.settings_errors import settings_problems
from tests.support.gateway_fakes import World

SETTINGS: list[type[BaseSettings]] = [GatewaySettings, WorkerSettings, UserStoreSettings]


def _numeric(cls: type[BaseSettings]) -> list[str]:
    """The fields whose value is a number (optional or not)."""
    names = []
    for name, field in cls.model_fields.items():
        kinds = set(getattr(field.annotation, "__args__", (field.annotation,)))
        if kinds & {int, float}:
            names.append(name)
    return names


NUMERIC = [(cls, name) for cls in SETTINGS for name in _numeric(cls)]
TEXT = [
    (cls, name)
    for cls in SETTINGS
    for name, field in cls.model_fields.items()
    if set(getattr(field.annotation, "__args__", (field.annotation,))) & {str, SecretStr}
]


def test_every_service_has_number_settings_to_check() -> None:
    assert {cls for cls, _ in NUMERIC} == set(SETTINGS)
    assert ("GatewaySettings", "jwt_ttl") in {(c.__name__, n) for c, n in NUMERIC}


past_32_bits = (
    st.integers(min_value=NUMBER_MAX + 1)
    | st.integers(max_value=NUMBER_MIN - 1)
    | st.sampled_from([2**31, 2**63, 2**64, -(2**63) - 1, 10**30])
).map(str) | st.floats(min_value=2.0**31, max_value=1e308).map(repr)


@given(st.sampled_from(NUMERIC), past_32_bits)
def test_a_number_past_32_bits_is_refused_naming_its_setting(
    case: tuple[type[BaseSettings], str], given_value: str
) -> None:
    cls, name = case
    with pytest.raises(ValidationError) as refused:
        cls(dialogue_env="local", **{name: given_value})  # as read from the environment
    problems = settings_problems(refused.value)
    assert any(p.startswith(f"{name}:") for p in problems), problems


def test_the_worker_refuses_a_replication_factor_kafka_cannot_carry() -> None:
    with pytest.raises(ValidationError) as refused:
        WorkerSettings(dialogue_env="local", topic_replication=2**15)
    assert settings_problems(refused.value)[0].startswith("topic_replication:")
    assert WorkerSettings(dialogue_env="local", topic_replication=2**15 - 1)


async def test_the_longest_token_lifetime_allowed_still_signs_up_and_in() -> None:
    settings = GatewaySettings(dialogue_env="local", jwt_ttl=NUMBER_MAX, session_max_age=NUMBER_MAX)
    world = World()
    body: dict[str, Any] = {
        "username": "longlived",
        "password": "secret1",
        "passwordConfirm": "secret1",
        "gender": "m",
    }
    async with TestClient(TestServer(create_app(settings, adapters=world.adapters))) as client:
        up = await client.post("/v1/auth/sign-up", json=body)
        assert up.status == 201, await up.text()
        signed_in = await client.post(
            "/v1/auth/sign-in", json={"username": "longlived", "password": "secret1"}
        )
        assert signed_in.status == 200, await signed_in.text()
        answer = await signed_in.json()
        claims = jwt.decode(answer["token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == NUMBER_MAX == answer["expiresAt"] - claims["iat"]
        await _check_token_works(client, answer["token"])


async def _check_token_works(client: TestClient[web.Request, web.Application], token: str) -> None:
    response = await client.get("/v1/chats", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200, await response.text()


@given(
    st.sampled_from(TEXT),
    st.text(min_size=1, max_size=20),
    st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),  # as os.environ reads them
)
def test_a_text_that_is_not_utf_8_is_refused_naming_its_setting(
    case: tuple[type[BaseSettings], str], text: str, stray: str
) -> None:
    cls, name = case
    given_value = text + stray
    with pytest.raises(ValidationError) as refused:
        cls(dialogue_env="local", **{name: given_value})
    problems = settings_problems(refused.value)
    assert any(p.startswith(f"{name}:") for p in problems), problems


def test_there_are_text_settings_to_check() -> None:
    names = {(c.__name__, n) for c, n in TEXT}
    assert {("GatewaySettings", "mysql_user"), ("UserStoreSettings", "mysql_password")} <= names
    assert ("WorkerSettings", "entrypoint_token") in names
