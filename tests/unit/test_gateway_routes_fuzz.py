"""The gateway's routes against generated requests, with fakes behind them: path
parameters, repeated and edge query values, header bytes, and JSON bodies that no JSON
library writes. Whatever arrives, the answer is below 500, an error is the platform's
JSON error body whose code begins with the status, and nothing is logged at ERROR.

The requests are written by hand (tests/support/raw_http.py) to the gateway's own server
(`GatewayRunner`, which answers what aiohttp's parser refuses in JSON too), so header
values may hold any byte. One gateway serves every example of a test.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from contracts.api import Chat
from contracts.records import UID_MAX
from gateway.app import create_app
from gateway.entrypoints.server import GatewayRunner
from gateway.settings import GatewaySettings
from tests.support.gateway_fakes import World
from tests.support.hostile import (
    Raw,
    either,
    json_bodies,
    json_scalars,
    message_texts,
    nested,
    read_seqs,
    user_id_lists,
)
from tests.support.raw_http import RawResponse, assert_well_answered, request

Client = TestClient[web.Request, web.Application]
PASSWORD = "secret1"
LOOSE = "1000000/1"
#: The chat both users are in (seeded into the fake workers).
CID = "65f0c0ffee0000000000beef"


def _settings() -> GatewaySettings:
    """No limit a few thousand requests reach: every example gets past them to the route."""
    rates = {
        name: LOOSE
        for name in GatewaySettings.model_fields
        if name.startswith("rate_") and name != "rate_limit_max_keys"
    }
    return GatewaySettings.model_validate(
        {
            "dialogue_env": "local",
            "signin_max_failures": 1_000_000,
            "signin_address_max_failures": 0,
            "signin_global_max_failures": 0,
            "trusted_proxies": "127.0.0.0/8,::1",  # X-Forwarded-For is read
            **rates,
        }
    )


class _GatewayServer(TestServer):
    """A TestServer on the gateway's own runner, as `python -m gateway` serves."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        return GatewayRunner(self.app, max_connections=1000, header_timeout=30)


@dataclass(frozen=True)
class Gateway:
    port: int
    client: Client
    tokens: dict[str, str]  # user name -> bearer token


async def _sign_up(client: Client, name: str) -> str:
    body = {"username": name, "password": PASSWORD, "passwordConfirm": PASSWORD, "gender": "f"}
    response = await client.post("/v1/auth/sign-up", json=body)
    assert response.status == 201, await response.text()
    return str((await response.json())["token"])


@pytest.fixture(scope="module")
async def gateway() -> AsyncIterator[Gateway]:
    world = World()
    world.workers.chats_by_id[CID] = Chat(id=CID, users=[1, 2], createdAt=1_700_000_000)
    async with TestClient(_GatewayServer(create_app(_settings(), adapters=world.adapters))) as c:
        tokens = {name: await _sign_up(c, name) for name in ("alice", "bobby")}
        assert c.port is not None
        yield Gateway(c.port, c, tokens)


def _bearer(gateway: Gateway, who: str | None) -> list[tuple[bytes, bytes]]:
    return [] if who is None else [(b"Authorization", f"Bearer {gateway.tokens[who]}".encode())]


# --- strategies ---------------------------------------------------------------------------

#: Every route of the app; {p} is the generated path parameter.
ROUTES = [
    ("POST", "/v1/auth/sign-up"),
    ("POST", "/v1/auth/sign-in"),
    ("POST", "/v1/auth/refresh"),
    ("GET", "/v1/users/me"),
    ("GET", "/v1/users"),
    ("POST", "/v1/chats"),
    ("GET", "/v1/chats"),
    ("GET", "/v1/chats/{p}"),
    ("PUT", "/v1/chats/{p}"),
    ("PUT", "/v1/chats/{p}/read"),
    ("POST", "/v1/chats/{p}/messages"),
    ("GET", "/v1/chats/{p}/messages"),
    ("GET", "/v1/stream"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/v1/admin/instances"),
    ("GET", "/"),
    ("GET", "/app/{p}"),
]


def test_the_route_list_is_every_route_of_the_app() -> None:
    app = create_app(_settings(), adapters=World().adapters)
    served = {
        (route.method, re.sub(r"\{\w+\}", "{p}", route.resource.canonical))
        for route in app.router.routes()
        if route.method not in ("HEAD", "OPTIONS") and route.resource is not None
    }
    assert served == set(ROUTES)


#: Path parameters: the users' chat, ids off by a character or a case, escapes a path
#: must not decode to (NUL, a bad escape, dot segments, a slash), files, a long one.
PATH_EDGES = [
    CID,
    CID.upper(),
    CID[:-1],
    CID + "0",
    CID + "%0a",
    "%00",
    "%ff",
    "%",
    "%2e%2e",
    "..",
    "%2Fv1%2Fchats",
    "index.html",
    "app.js",
    "x" * 5000,
]
PATH_PARAMS = st.sampled_from(PATH_EDGES) | st.text(min_size=1, max_size=30).map(
    lambda text: quote(text, safe="")
)
#: Bytes as they are, unescaped: mostly what the parser refuses (in JSON, 4000).
UNESCAPED = st.binary(min_size=1, max_size=8).map(lambda raw: raw.decode("latin-1"))
QUERY_NAMES = st.sampled_from(
    ["limit", "cursor", "before", "after", "beforeSeq", "afterSeq", "id", "username"]
) | st.text(max_size=6)
QUERY_EDGES = [
    "",
    "0",
    "-0",
    "1",
    "200",
    "201",
    str(2**31),
    str(2**53 + 1),
    str(UID_MAX),
    str(UID_MAX + 1),
    str(2**64),
    "1e3",
    "NaN",
    " 1",
    "\uff11",  # a fullwidth digit one
    "\u0663",  # an Arabic-Indic digit three
    CID,
    CID.upper(),
    "AAAAAAAA",
    "x" * 300,
]
QUERY_VALUES = st.sampled_from(QUERY_EDGES) | st.text(max_size=30)
HEADER_NAMES = st.sampled_from(
    [
        "Authorization",
        "Idempotency-Key",
        "X-Forwarded-For",
        "X-Request-ID",
        "If-None-Match",
        "Origin",
        "Accept-Encoding",
    ]
)
HEADER_EDGES = [
    b"",
    b" ",
    b"1.2.3.4",
    b"::1",
    b"[::1]:80",
    b"fe80::1%eth0",
    b"203.0.113.9, garbage, 127.0.0.1",
    b"999.1.1.1",
    b", ,",
    b"unknown",
    b"*",
    b'W/"x"',
    b"null",
    b"http://evil.example",
    b"gzip, br",
    b"Bearer",
    b"Bearer ",
    b"bearer x.y.z",
    b"Bearer \xff\xfe",
    b"caf\xc3\xa9",
    b"\xff",
    b"x" * 300,
]
#: Visible ASCII, spaces and obs-text (0x80-0xFF: invalid UTF-8 among it).
HEADER_VALUES = st.sampled_from(HEADER_EDGES) | st.binary(max_size=40).map(
    lambda raw: bytes(byte for byte in raw if byte >= 0x20 and byte != 0x7F)
)
#: Any byte but CR and LF (which would end the header): controls the parser refuses.
HEADER_BYTES = st.binary(max_size=40).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))
CHAT_FIELDS = {
    "users": user_id_lists([1, 2, 3]),  # 3 has no account
    "txt": message_texts(),
    "seq": read_seqs(),
}
AUTH_FIELDS = {
    name: json_scalars() | st.sampled_from(["alice", "bobby", PASSWORD, "f", "m"])
    for name in ("username", "password", "passwordConfirm", "gender")
}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, list[tuple[bytes, bytes]], bytes, str | None]:
    """(method, target, headers, body, signed-in user) for any route of the app."""
    method, path = draw(st.sampled_from(ROUTES))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(["DELETE", "PATCH", "OPTIONS", "PUT", "POST"]))
    rarely = st.integers(0, 19).map(lambda n: n == 0)  # what the parser refuses, mostly
    target = path.replace("{p}", draw(UNESCAPED if draw(rarely) else PATH_PARAMS))
    query = draw(st.lists(st.tuples(QUERY_NAMES, QUERY_VALUES), max_size=5))
    escape = not draw(rarely)  # else as they are, what a sloppy client sends
    if query:
        pairs = [(quote(n, safe=""), quote(v, safe="")) if escape else (n, v) for n, v in query]
        target += "?" + "&".join(f"{name}={value}" for name, value in pairs)
    values = HEADER_BYTES if draw(rarely) else HEADER_VALUES
    headers = draw(st.lists(st.tuples(HEADER_NAMES.map(str.encode), values), max_size=4))
    body = draw(st.just(b"") | json_bodies({**CHAT_FIELDS, **AUTH_FIELDS}))
    return method, target, headers, body, draw(st.sampled_from([None, "alice", "bobby"]))


# --- tests ----------------------------------------------------------------------------------


@given(request=requests())
@settings(
    max_examples=500,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_any_request_to_any_route_is_answered_below_500_in_json(
    gateway: Gateway,
    caplog: pytest.LogCaptureFixture,
    request: tuple[str, str, list[tuple[bytes, bytes]], bytes, str | None],
) -> None:
    """Any route and method, signed in or not, with generated path, query, headers and
    body; what the parser refuses now and then."""
    caplog.clear()
    method, target, headers, body, who = request
    note(f"{method} {target} as {who}, headers {headers}, body {body[:500]!r}")
    answer = await _send(gateway, method, target, _bearer(gateway, who) + headers, body)
    event(f"answered {answer.status}")
    assert_well_answered(answer, caplog)


#: The chat routes that read a body, and the field each reads.
CHAT_ROUTES = [
    ("POST", "/v1/chats", "users"),
    ("PUT", f"/v1/chats/{CID}", "users"),
    ("PUT", f"/v1/chats/{CID}/read", "seq"),
    ("POST", f"/v1/chats/{CID}/messages", "txt"),
]


@st.composite
def chat_requests(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(method, path, body) of a chat route, the body built around the field it reads."""
    method, path, field = draw(st.sampled_from(CHAT_ROUTES))
    return method, path, draw(json_bodies({field: CHAT_FIELDS[field]}))


@given(
    request=chat_requests(),
    key=either(st.none(), st.sampled_from(["k", "k" * 256, "a b", ""]) | st.text(max_size=8)),
)
@settings(
    max_examples=400,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_any_json_body_of_a_chat_route_is_answered_below_500_in_json(
    gateway: Gateway,
    caplog: pytest.LogCaptureFixture,
    request: tuple[str, str, bytes],
    key: str | None,
) -> None:
    """users, txt and seq of a member of the chat: big integers, 1e999, -0, NaN, lone
    surrogate escapes, repeated keys, values nested as deep as the parser goes."""
    caplog.clear()
    method, path, body = request
    headers = _bearer(gateway, "alice")
    if key is not None:
        headers.append((b"Idempotency-Key", key.encode()))
    note(f"{method} {path}, Idempotency-Key {key!r}, body {body[:500]!r}")
    answer = await _send(gateway, method, path, headers, body)
    event(f"{method} {path.split(CID)[-1] or '{cid}'} answered {answer.status}")
    assert_well_answered(answer, caplog)


@pytest.mark.parametrize("route", [(m, p) for m, p, field in CHAT_ROUTES if field == "users"])
@pytest.mark.parametrize("deep", [nested(1_000), nested(1_022), nested(1_000, "object")])
async def test_a_user_id_nested_too_deep_to_quote_is_4002(
    gateway: Gateway, caplog: pytest.LogCaptureFixture, route: tuple[str, str], deep: Raw
) -> None:
    caplog.clear()
    method, path = route
    body = f'{{"users":[1,{deep.token}]}}'.encode()
    answer = await _send(gateway, method, path, _bearer(gateway, "alice"), body)
    assert_well_answered(answer, caplog)
    assert answer.json()["code"] == "4002"


async def test_a_repeated_idempotency_key_header_is_read_as_its_first_value(
    gateway: Gateway,
) -> None:
    """Two Idempotency-Key headers are not refused: the first one is the key, the second
    is ignored as if it were not sent. One header holding both ("a, b", as a proxy that
    folds repeated headers passes them on) is 4000: a space is not in a key."""
    first, second = f"first-{uuid.uuid4().hex}", f"second-{uuid.uuid4().hex}"
    url = f"/v1/chats/{CID}/messages"

    async def post(*keys: str) -> str:
        headers = CIMultiDict({"Authorization": f"Bearer {gateway.tokens['alice']}"})
        for key in keys:
            headers.add("Idempotency-Key", key)
        response = await gateway.client.post(url, json={"txt": "keyed twice"}, headers=headers)
        assert response.status == 202, await response.text()
        return str((await response.json())["id"])

    both = await post(first, second)
    assert await post(first, second) == both
    assert await post(first) == both
    swapped = await post(second, first)
    assert swapped != both
    assert await post(second) == swapped
    folded = {"Authorization": f"Bearer {gateway.tokens['alice']}", "Idempotency-Key": "a, b"}
    refused = await gateway.client.post(url, json={"txt": "keyed twice"}, headers=folded)
    assert (refused.status, (await refused.json())["code"]) == (400, "4000")


async def _send(
    gateway: Any, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> RawResponse:
    return await request(gateway.port, method, target, headers, body, host="gateway")
