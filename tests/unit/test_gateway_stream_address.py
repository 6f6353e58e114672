"""Which address STREAM_MAX_PER_ADDRESS holds a stream to: the one the connection cap
counts its connection under, or a client a trusted proxy forwarded; none for loopback
and proxy peers, whose clients all share their address."""

from __future__ import annotations

import ipaddress
import time

import orjson
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from hypothesis import assume, given
from hypothesis import strategies as st

from contracts.live import CloseCode
from gateway.app import create_app
from gateway.domain.addresses import IPAddress, address_key
from gateway.domain.tokens import TokenCodec
from gateway.entrypoints.server import SHARED, ConnectionCap
from gateway.entrypoints.state import SETTINGS
from gateway.entrypoints.stream_routes import stream_address
from gateway.settings import GatewaySettings
from platform_common.local import LOCAL_JWT_SECRET
from tests.support.gateway_fakes import World
from tests.support.waiting import WITHIN

Client = TestClient[web.Request, web.Application]


def _token(user_id: int) -> str:
    codec = TokenCodec(LOCAL_JWT_SECRET, "dialogue-gateway", 3600)
    return codec.issue(user_id, "someone", time.time()).token


async def _first_frame(client: Client, user_id: int, forwarded: str | None = None) -> object:
    """The `type` of the stream's first frame, or its close code."""
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    ws = await client.ws_connect("/v1/stream", headers=headers)
    hello = {"type": "hello", "token": _token(user_id), "since": {}}
    await ws.send_str(orjson.dumps(hello).decode())
    msg = await ws.receive(timeout=WITHIN)
    if msg.type is WSMsgType.TEXT:
        return orjson.loads(msg.data)["type"]
    return ws.close_code


async def test_loopback_clients_are_not_held_to_one_address() -> None:
    """Behind a proxy on the same host every client is 127.0.0.1: stream 1,001 and every
    one after it was refused with 1013 while the connection cap let them in."""
    settings = GatewaySettings(dialogue_env="local", stream_max_per_address=2)
    async with TestClient(TestServer(create_app(settings, adapters=World().adapters))) as client:
        assert [await _first_frame(client, uid) for uid in (1, 2, 3, 4)] == ["ready"] * 4


async def test_clients_a_trusted_proxy_names_are_held_each_to_their_own() -> None:
    settings = GatewaySettings(
        dialogue_env="local", stream_max_per_address=2, trusted_proxies="127.0.0.1"
    )
    async with TestClient(TestServer(create_app(settings, adapters=World().adapters))) as client:
        one = [await _first_frame(client, uid, "203.0.113.9") for uid in (1, 2, 3)]
        assert one == ["ready", "ready", CloseCode.TRY_AGAIN]
        assert await _first_frame(client, 4, "203.0.113.10") == "ready"
        assert await _first_frame(client, 5) == "ready"  # the proxy's own: not held


def _request(settings: GatewaySettings, peer: str, forwarded: str | None) -> web.Request:
    app = web.Application()
    app[SETTINGS] = settings
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    return make_mocked_request("GET", "/v1/stream", headers=headers, app=app).clone(remote=peer)


ADDRESSES = st.ip_addresses().filter(
    lambda a: not (isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None)
)


@given(ADDRESSES, st.booleans(), st.none() | ADDRESSES)
def test_a_stream_is_held_to_the_connection_caps_key_unless_it_shares_it(
    peer: IPAddress, proxy: bool, forwarded: IPAddress | None
) -> None:
    """Without a client forwarded by a trusted proxy, a stream is held to the key the
    connection cap counts its connection under, and to none where the cap holds the
    peer to MAX_CONNECTIONS only (loopback, a trusted proxy)."""
    assume(forwarded is None or not proxy or address_key(forwarded) != address_key(peer))
    settings = GatewaySettings(
        dialogue_env="local", trusted_proxies=f"{peer}/{peer.max_prefixlen}" if proxy else ""
    )
    request = _request(settings, str(peer), None if forwarded is None else str(forwarded))
    cap_key = ConnectionCap(1, proxies=settings.trusted_proxies).admit((str(peer),))
    if proxy and forwarded is not None:  # a client it names: held to that client
        assert stream_address(request) == address_key(forwarded)
    else:
        assert stream_address(request) == (None if cap_key == SHARED else cap_key)
    if peer.is_loopback or proxy:
        assert cap_key == SHARED


@pytest.mark.parametrize("peer", ["127.0.0.1", "::1", "127.0.0.2"])
def test_loopback_forwarding_unbelieved_addresses_is_still_loopback(peer: str) -> None:
    settings = GatewaySettings(dialogue_env="local")  # no trusted proxies
    assert stream_address(_request(settings, peer, "203.0.113.9")) is None
