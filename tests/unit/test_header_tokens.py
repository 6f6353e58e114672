"""Tokens sent in an `Authorization` header (ENTRYPOINT_TOKEN, ADMIN_TOKEN) are visible
ASCII, or refused at start: found in review, a non-ASCII ENTRYPOINT_TOKEN passed both
services' settings and then the worker refused every call of the gateway (401), so every
read and write answered 5030 and nothing said why."""

from __future__ import annotations

import secrets

import pytest
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dialogue_worker.entrypoints.middleware import _authorize
from dialogue_worker.errors import RequestError
from dialogue_worker.settings import WorkerSettings
from gateway.settings import GatewaySettings
from platform_common.settings_errors import settings_problems

VISIBLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
#: A random-looking visible-ASCII token, with one character that is not (a space, a
#: control or a non-ASCII one) put somewhere in it.
not_visible = st.characters(blacklist_categories=["Cs"]).filter(lambda c: not "!" <= c <= "~")


@st.composite
def tokens_with_a_stranger(draw: st.DrawFn) -> str:
    base = secrets.token_urlsafe(32)
    at = draw(st.integers(min_value=0, max_value=len(base)))
    return base[:at] + draw(not_visible) + base[at:]


@given(tokens_with_a_stranger(), st.sampled_from(["entrypoint_token", "admin_token"]))
def test_the_gateway_refuses_a_header_token_that_is_not_visible_ascii(
    token: str, name: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        GatewaySettings(dialogue_env="local", **{name: token})
    [problem] = settings_problems(refused.value)
    assert name.upper() in problem and "visible ASCII" in problem
    assert token not in str(refused.value)


@given(tokens_with_a_stranger())
def test_the_worker_refuses_an_entrypoint_token_that_is_not_visible_ascii(token: str) -> None:
    with pytest.raises(ValidationError) as refused:
        WorkerSettings(dialogue_env="local", entrypoint_token=token)
    [problem] = settings_problems(refused.value)
    assert "ENTRYPOINT_TOKEN" in problem and "visible ASCII" in problem
    assert token not in str(refused.value)


@given(st.text(VISIBLE, min_size=1, max_size=200))
def test_every_token_the_settings_take_is_one_the_worker_lets_the_gateway_in_with(
    token: str,
) -> None:
    gateway = GatewaySettings(dialogue_env="local", entrypoint_token=token)
    worker = WorkerSettings(dialogue_env="local", entrypoint_token=token)
    sent = f"Entrypoint {gateway.secret('entrypoint_token')}"  # as gateway/bootstrap.py
    request = make_mocked_request("GET", "/chats", headers={"Authorization": sent})
    _authorize(request, worker.entrypoint_token.get_secret_value().encode())
    other = make_mocked_request("GET", "/chats", headers={"Authorization": sent + "x"})
    with pytest.raises(RequestError):
        _authorize(other, worker.entrypoint_token.get_secret_value().encode())
