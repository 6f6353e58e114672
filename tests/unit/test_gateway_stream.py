"""`GET /v1/stream` at the HTTP edge, with hand-written fakes behind the gateway, and the
hello frame's parser for every input a stranger can send."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiohttp import WSMsgType, WSServerHandshakeError, web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.api import Chat
from contracts.events import ChatCreated, MessageCreated
from contracts.live import (
    CLIENT_FRAME_MAX,
    CLOSE_TEXT,
    SINCE_MAX,
    CloseCode,
    Hello,
    HelloProblem,
    parse_hello,
)
from contracts.records import UID_MAX
from gateway.app import create_app
from gateway.domain.tokens import TokenCodec
from gateway.entrypoints import stream_routes
from gateway.entrypoints.state import SERVICES
from gateway.entrypoints.stream_routes import WebSocket, close_reason, origin_allowed
from gateway.openapi import document as openapi_document
from gateway.settings import GatewaySettings
from platform_common.local import LOCAL_JWT_SECRET
from platform_common.settings_base import NUMBER_MAX
from tests.support.gateway_fakes import World
from tests.support.readme_client import readme_client
from tests.support.waiting import WITHIN, eventually

CID = "c" * 24
LIVE_DOC = Path(__file__).resolve().parents[2] / "docs" / "live.md"
Client = TestClient[web.Request, web.Application]


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
async def client(world: World) -> AsyncIterator[Client]:
    settings = GatewaySettings(dialogue_env="local", stream_hello_timeout=0.5)
    async with TestClient(TestServer(create_app(settings, adapters=world.adapters))) as client:
        yield client


def _token(user_id: int = 7, ttl: int = 3600, now: float | None = None) -> str:
    codec = TokenCodec(LOCAL_JWT_SECRET, "dialogue-gateway", ttl)
    return codec.issue(user_id, "someone", time.time() if now is None else now).token


async def _hello(client: Client, token: str, since: dict[str, int] | None = None) -> Any:
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(
        orjson.dumps({"type": "hello", "token": token, "since": since or {}}).decode()
    )
    return ws


async def _frames(ws: Any, count: int) -> list[dict[str, Any]]:
    frames = []
    while len(frames) < count:
        msg = await ws.receive(timeout=WITHIN)
        assert msg.type is WSMsgType.TEXT, (msg.type, ws.close_code)
        frames.append(orjson.loads(msg.data))
    return frames


async def _closed_with(ws: Any) -> int | None:
    while True:
        msg = await ws.receive(timeout=WITHIN)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING):
            return ws.close_code  # type: ignore[no-any-return]


async def test_a_plain_get_is_a_json_400(client: Client) -> None:
    response = await client.get("/v1/stream")
    body = await response.json()
    assert response.status == 400 and body["code"] == "4000"


async def test_hello_then_ready_then_live_frames(client: Client, world: World) -> None:
    ws = await _hello(client, _token(7))
    assert await _frames(ws, 1) == [{"type": "ready", "userId": 7}]
    chat = Chat(id=CID, users=[7, 8], createdAt=1)
    world.feed.publish(ChatCreated(cid=CID, chat=chat))
    world.workers.chats_by_id[CID] = chat
    message = {"id": "d" * 24, "cid": CID, "uid": 8, "createdAt": 1, "text": "hi", "seq": 1}
    world.feed.publish(MessageCreated.model_validate({"cid": CID, "seq": 1, "message": message}))
    created, pushed = await _frames(ws, 2)
    assert created["type"] == "chat" and created["change"] == "created"
    assert pushed == {
        "type": "message",
        "cid": CID,
        "seq": 1,
        "message": {"object": "message", **message},
    }
    await ws.close()


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ("not json", CloseCode.BAD_HELLO),
        ('{"type": "hi"}', CloseCode.BAD_HELLO),
        ('{"type": "hello"}', CloseCode.BAD_HELLO),
        ('{"type": "hello", "token": "x", "since": {"zz": 1}}', CloseCode.BAD_HELLO),
        # its reason quotes the chat id: cut at 120 bytes, never inside a character
        ('{"type": "hello", "token": "x", "since": {"%s": 1}}' % ("中" * 40), CloseCode.BAD_HELLO),
        ('{"type": "hello", "token": "not-a-jwt"}', CloseCode.UNAUTHORIZED),
    ],
)
async def test_a_bad_first_frame_closes_with_its_code(
    client: Client, first: str, code: CloseCode
) -> None:
    ws = await client.ws_connect("/v1/stream")
    await ws.send_str(first)
    assert await _closed_with(ws) == code


async def test_a_binary_hello_is_refused(client: Client) -> None:
    ws = await client.ws_connect("/v1/stream")
    await ws.send_bytes(b"\x00\x01")
    assert await _closed_with(ws) == CloseCode.UNSUPPORTED


async def test_a_frame_over_the_limit_closes_with_1009(client: Client) -> None:
    ws = await client.ws_connect("/v1/stream", max_msg_size=0)
    await ws.send_str("x" * (CLIENT_FRAME_MAX + 1))
    assert await _closed_with(ws) == CloseCode.TOO_BIG


@pytest.mark.parametrize("after_hello", [False, True])
async def test_a_text_frame_that_is_not_utf_8_closes_with_1007(
    client: Client, after_hello: bool
) -> None:
    """aiohttp closes the socket itself: the code is a documented one all the same."""
    ws = await (_hello(client, _token()) if after_hello else client.ws_connect("/v1/stream"))
    if after_hello:
        await _frames(ws, 1)
    await ws.send_frame(b"\xff\xfe", WSMsgType.TEXT)
    assert await _closed_with(ws) == CloseCode.INVALID_TEXT


def test_the_close_codes_in_docs_live_are_the_contracts() -> None:
    documented = re.findall(r"^\| (\d{4}) \|", LIVE_DOC.read_text(), re.MULTILINE)
    assert [int(code) for code in documented] == sorted(CLOSE_TEXT)
    assert sorted(CLOSE_TEXT) == sorted(CloseCode)


async def test_no_hello_in_time_closes(client: Client) -> None:
    ws = await client.ws_connect("/v1/stream")
    assert await _closed_with(ws) == CloseCode.HELLO_TIMEOUT


async def test_an_expired_token_has_its_own_code(client: Client) -> None:
    ws = await _hello(client, _token(ttl=60, now=time.time() - 120))
    assert await _closed_with(ws) == CloseCode.TOKEN_EXPIRED


async def test_the_socket_closes_when_its_token_expires(client: Client) -> None:
    # Three seconds left: with one, a slow machine let it expire before `ready` went out.
    ws = await _hello(client, _token(ttl=60, now=time.time() - 57))
    assert (await _frames(ws, 1))[0]["type"] == "ready"
    assert await _closed_with(ws) == CloseCode.TOKEN_EXPIRED


async def test_a_feed_not_yet_positioned_asks_to_come_back(client: Client, world: World) -> None:
    world.feed.positioned = False
    ws = await _hello(client, _token())
    assert await _closed_with(ws) == CloseCode.TRY_AGAIN


async def test_workers_down_at_hello_asks_to_come_back(client: Client, world: World) -> None:
    world.workers.crash = True
    ws = await _hello(client, _token())
    assert await _closed_with(ws) == CloseCode.TRY_AGAIN


async def test_shutting_down_says_going_away(world: World) -> None:
    settings = GatewaySettings(dialogue_env="local")
    client: Client = TestClient(TestServer(create_app(settings, adapters=world.adapters)))
    await client.start_server()
    ws = await _hello(client, _token())
    await _frames(ws, 1)
    closing = asyncio.create_task(client.server.close())  # the server, not the client
    assert await _closed_with(ws) == CloseCode.GOING_AWAY
    await closing
    await client.close()


async def test_a_failure_after_the_upgrade_closes_the_socket_as_internal(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: a failure between the upgrade and the handler's own error handling
    reached the errors middleware, whose JSON answer, written into the upgraded socket,
    read as a broken frame (the client saw 1002, and no reason)."""

    def broken(request: web.Request, size: int) -> None:
        raise TypeError("an injected failure right after the upgrade")

    monkeypatch.setattr(stream_routes, "_limit_send_buffer", broken)
    settings = GatewaySettings(dialogue_env="local")
    async with TestClient(TestServer(create_app(settings, adapters=world.adapters))) as client:
        ws = await _hello(client, _token())
        assert await _closed_with(ws) == CloseCode.INTERNAL


async def test_the_largest_send_buffer_a_setting_allows_serves_a_stream(world: World) -> None:
    settings = GatewaySettings(dialogue_env="local", stream_send_buffer=NUMBER_MAX)
    async with TestClient(TestServer(create_app(settings, adapters=world.adapters))) as client:
        ws = await _hello(client, _token(7))
        assert await _frames(ws, 1) == [{"type": "ready", "userId": 7}]
        await ws.close()


async def test_the_socket_gauge_and_close_reasons_are_exported(client: Client) -> None:
    ws = await _hello(client, _token())
    await _frames(ws, 1)
    admin = {"Authorization": "Bearer local-only-admin-token"}

    async def metrics() -> str:
        return await (await client.get("/metrics", headers=admin)).text()

    assert "gateway_stream_sockets 1.0" in await metrics()
    await ws.close()
    text = await eventually(metrics, lambda t: "gateway_stream_sockets 0.0" in t)
    assert 'gateway_stream_closes_total{code="1000"} 1.0' in text
    # the upgrade is counted; a socket's lifetime is no request duration
    assert 'route="/v1/stream",status="101"} 1.0' in text
    assert 'gateway_http_request_duration_seconds_count{route="/v1/stream"}' not in text
    for code in (3000, 3999, 4321, 4999):  # a client's own codes: one label for all
        own = await _hello(client, _token())
        await _frames(own, 1)
        await own.close(code=code)
    text = await eventually(metrics, lambda t: 'code="other"} 4.0' in t)
    assert "4321" not in text


async def test_stream_opens_are_rate_limited_per_address(world: World) -> None:
    """The upgrade is refused with a 429 (and Retry-After) before any socket opens."""
    settings = GatewaySettings(
        dialogue_env="local", rate_streams_per_address="2/60", trusted_proxies="127.0.0.1"
    )
    now = time.time()  # the app's clock stands still: Retry-After is exact
    app = create_app(settings, adapters=world.adapters, clock=lambda: now)
    async with TestClient(TestServer(app)) as client:
        opened = [await _hello(client, _token()) for _ in range(2)]
        for ws in opened:
            assert (await _frames(ws, 1))[0]["type"] == "ready"
        with pytest.raises(WSServerHandshakeError) as refused:
            await client.ws_connect("/v1/stream")
        assert refused.value.status == 429
        assert refused.value.headers is not None and refused.value.headers["Retry-After"] == "30"
        elsewhere = await client.ws_connect(
            "/v1/stream", headers={"X-Forwarded-For": "203.0.113.9"}
        )
        await elsewhere.close()
        for ws in opened:
            await ws.close()


# --- the hello parser: every JSON a client can send ---------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=30), inner, max_size=4)
    ),
    max_leaves=12,
)
CIDS = st.text("0123456789abcdef", min_size=24, max_size=24)


@given(JSON)
def test_any_json_is_a_hello_or_a_stated_problem(value: Any) -> None:
    try:
        hello = parse_hello(json.dumps(value))  # stdlib: also ints past 64 bits, NaN
    except HelloProblem as exc:
        assert str(exc)
    else:
        assert isinstance(hello, Hello) and hello.token


@given(st.text(max_size=200))
def test_any_text_is_a_hello_or_a_stated_problem(text: str) -> None:
    try:
        parse_hello(text)
    except HelloProblem as exc:
        assert str(exc)


@given(
    st.dictionaries(
        CIDS | st.text(max_size=30),
        st.integers(min_value=-(2**64), max_value=2**64) | st.booleans() | st.floats(),
        max_size=5,
    )
)
def test_since_takes_chat_ids_and_seqs_within_bounds_only(since: dict[str, Any]) -> None:
    valid = all(
        len(c) == 24
        and all(ch in "0123456789abcdef" for ch in c)
        and type(s) in (int, float)
        and float(s).is_integer()
        and 0 <= s <= UID_MAX
        and (type(s) is int or abs(s) < 2**53)
        for c, s in since.items()
    )
    text = json.dumps({"type": "hello", "token": "t", "since": since})
    try:
        hello = parse_hello(text)
    except HelloProblem:
        assert not valid
    else:
        assert valid and hello.since == {c: int(s) for c, s in since.items()}


def test_since_names_at_most_since_max_chats() -> None:
    many = {f"{i:024x}": 0 for i in range(SINCE_MAX + 1)}
    hello = {"type": "hello", "token": "t", "since": dict(list(many.items())[:SINCE_MAX])}
    assert len(parse_hello(orjson.dumps(hello).decode()).since) == SINCE_MAX
    with pytest.raises(HelloProblem, match="at most"):
        parse_hello(orjson.dumps({**hello, "since": many}).decode())


async def test_the_readme_client_prints_live_messages(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """The client in the README works as printed (with a real gap: tests/e2e)."""
    namespace = readme_client()
    settings = GatewaySettings(dialogue_env="local")
    server = TestServer(create_app(settings, adapters=world.adapters))
    await server.start_server()
    chat = Chat(id=CID, users=[7, 8], createdAt=1)
    world.workers.chats_by_id[CID] = chat
    since: dict[str, int] = {}
    listening = asyncio.create_task(namespace["listen"](str(server.make_url("")), _token(7), since))
    await eventually(lambda: server.app[SERVICES].stream.hub.sessions == 1)
    message = {"id": "d" * 24, "cid": CID, "uid": 8, "createdAt": 1, "text": "hi", "seq": 1}
    world.feed.publish(MessageCreated.model_validate({"cid": CID, "seq": 1, "message": message}))
    await eventually(lambda: since == {CID: 1}, what="the message seen")
    await server.close()  # 1001: the loop ends
    await listening
    assert capsys.readouterr().out == f"{CID} 1 hi\n"


async def test_a_client_that_does_not_answer_pings_is_dropped(world: World) -> None:
    settings = GatewaySettings(dialogue_env="local", stream_heartbeat=0.2)
    client: Client = TestClient(TestServer(create_app(settings, adapters=world.adapters)))
    await client.start_server()
    try:
        ws = await client.ws_connect("/v1/stream", autoping=False)  # never answers a ping
        hello = {"type": "hello", "token": _token(), "since": {}}
        await ws.send_str(orjson.dumps(hello).decode())
        kinds = []
        while not ws.closed:
            msg = await ws.receive(timeout=WITHIN)
            kinds.append(msg.type)
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                break
        assert WSMsgType.PING in kinds  # it was asked, and the server gave up on it
        admin = {"Authorization": "Bearer local-only-admin-token"}
        text = await eventually(
            lambda: _text(client.get("/metrics", headers=admin)),
            lambda t: "gateway_stream_sockets 0.0" in t,
        )
        assert 'gateway_stream_closes_total{code="1006"} 1.0' in text
    finally:
        await client.close()


async def _text(response: Any) -> str:
    return await (await response).text()  # type: ignore[no-any-return]


async def test_a_frame_the_client_does_not_take_in_time_cuts_the_connection() -> None:
    """A client that stopped reading: the send waits on its full buffers, then gives up,
    cuts the connection and says so (a catch-up must not hold its slot meanwhile)."""

    class StuckSocket:  # aiohttp's send_str waits for the transport to drain
        closed = False

        async def send_str(self, text: str) -> None:
            await asyncio.Event().wait()

    class Transport:
        aborted = False

        def abort(self) -> None:
            self.aborted = True

    request = SimpleNamespace(transport=Transport())
    socket = WebSocket(StuckSocket(), request, send_within=0.05)  # type: ignore[arg-type]
    with pytest.raises(ConnectionResetError, match=r"took no frame within 0\.05 s"):
        await socket.send("frame")
    assert request.transport.aborted and socket.code is CloseCode.TOO_SLOW


@given(st.text())
def test_a_close_reason_is_whole_characters_within_120_bytes(reason: str) -> None:
    cut = close_reason(reason)
    assert len(cut) <= 120 and reason.startswith(cut.decode("utf-8"))


FRAMES_AFTER_HELLO = st.lists(
    st.one_of(
        st.text(max_size=200).map(lambda text: ("text", text)),
        st.sampled_from(['{"type":"hello","token":"x"}', "[]", "null", '{"type":"ping"}']).map(
            lambda text: ("text", text)
        ),
        st.binary(max_size=64).map(lambda data: ("binary", data)),
    ),
    max_size=6,
)


@settings(max_examples=40, deadline=None)
@given(FRAMES_AFTER_HELLO)
async def test_frames_after_hello_are_ignored_or_close_as_documented(
    frames: list[tuple[str, Any]],
) -> None:
    """live.md: text frames after hello are ignored; a binary frame closes with 1003. Only
    the hello had a property test; what a client sends next reaches the same socket."""
    world = World()
    settings_ = GatewaySettings(dialogue_env="local", stream_hello_timeout=0.5)
    async with TestClient(TestServer(create_app(settings_, adapters=world.adapters))) as client:
        ws = await _hello(client, _token(7))
        assert await _frames(ws, 1) == [{"type": "ready", "userId": 7}]
        binary = False
        for kind, payload in frames:
            if kind == "text":
                await ws.send_str(payload)
            else:
                await ws.send_bytes(payload)
                binary = True
                break
        if binary:
            assert await _closed_with(ws) == CloseCode.UNSUPPORTED
        else:  # still open, and still delivering
            chat = Chat(id=CID, users=[7, 8], createdAt=1)
            world.feed.publish(ChatCreated(cid=CID, chat=chat))
            [created] = await _frames(ws, 1)
            assert created["type"] == "chat" and created["cid"] == CID
        await ws.close()


async def test_pages_of_other_origins_cannot_open_streams_nor_spend_the_budget(
    world: World,
) -> None:
    """A page elsewhere opening sockets from its visitors' browsers spent their
    address's stream budget before any hello, and their own tab's reconnects were
    refused for as long as it stayed open (found in review). Other origins are now
    refused first (403, 4030); the gateway's own origin, listed ones and clients that
    send no Origin (not browsers) open streams as before."""
    settings = GatewaySettings(
        dialogue_env="local",
        rate_streams_per_address="2/60",
        stream_origins="https://app.example",
    )
    client: Client = TestClient(TestServer(create_app(settings, adapters=world.adapters)))
    await client.start_server()
    try:
        for _ in range(5):
            with pytest.raises(WSServerHandshakeError) as refused:
                await client.ws_connect("/v1/stream", headers={"Origin": "https://evil.example"})
            assert refused.value.status == 403
        answer = await client.get(
            "/v1/stream",
            headers={
                "Origin": "null",
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
        assert answer.status == 403 and (await answer.json())["code"] == "4030"
        documented = openapi_document()["paths"]["/v1/stream"]["get"]["responses"]
        assert (
            "4030"
            in documented["403"]["content"]["application/json"]["schema"]["properties"]["code"][
                "enum"
            ]
        )  # the refusal is in the OpenAPI document (it was not: found in review)
        own = str(client.make_url("").origin())
        for origin in (own, "https://app.example"):  # the budget of 2 is still whole
            ws = await client.ws_connect("/v1/stream", headers={"Origin": origin})
            await ws.send_str(orjson.dumps({"type": "hello", "token": _token()}).decode())
            assert (await _frames(ws, 1))[0]["type"] == "ready"
            await ws.close()
        with pytest.raises(WSServerHandshakeError) as spent:  # and now it is spent
            await client.ws_connect("/v1/stream")
        assert spent.value.status == 429
    finally:
        await client.close()


@given(st.one_of(st.none(), st.text(max_size=60)), st.text(max_size=40))
def test_any_origin_and_host_are_judged_without_raising(origin: str | None, host: str) -> None:
    assert origin_allowed(origin, host, ["https://app.example", "null"]) in (True, False)


_HOSTS = st.sampled_from(["chat.example", "evil.example", "127.0.0.1", "[::1]"])
_PORTS = st.sampled_from([None, 80, 443, 8007])


@given(st.sampled_from(["http", "https"]), _HOSTS, _PORTS, _HOSTS, _PORTS)
def test_an_origin_is_the_gateways_own_when_it_names_the_host_and_port_asked(
    scheme: str, host: str, port: int | None, asked: str, asked_port: int | None
) -> None:
    """Same host, and the same port once each side's default (the origin's scheme's)
    is filled in; the scheme itself is not compared (TLS may end at a proxy)."""
    origin = f"{scheme}://{host}" + ("" if port is None else f":{port}")
    header = asked + ("" if asked_port is None else f":{asked_port}")
    default = 443 if scheme == "https" else 80
    same = host == asked and (port or default) == (asked_port or default)
    assert origin_allowed(origin, header, []) is same
