"""`python -m gateway` on the real MariaDB, Kafka and Consul, driven over raw sockets:
sign-in under every variant of a locked-out name, JSON answers to what the HTTP parser
refuses, slow clients, the connection cap, the ops endpoints and the log."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from dialogue_worker.adapters.topics import ensure_topics
from infra.local import LocalSettings
from infra.processes.gateway import (
    GatewayProcess,
    mysql_connect,
    scratch_database,
    serving_gateway,
    standalone_env,
)
from infra.processes.private import free_port
from platform_common.local import LOCAL_ADMIN_TOKEN
from tests.support.raw_http import RawResponse, exchange, parse, read_to_close
from tests.support.usernames import ISSUE_VARIANTS, variants
from tests.support.waiting import eventually, hold

PASSWORD = "secret-pw"
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
CAP = 5
#: How long a trickling client keeps going before the test gives up on the server.
TRICKLE_FOR = 30.0


@pytest.fixture(scope="module")
async def database(infra: LocalSettings, run_id: str) -> AsyncIterator[str]:
    async with scratch_database(infra, f"gw_edge_{run_id}") as name:
        yield name


@pytest.fixture(scope="module")
async def gateway(
    infra: LocalSettings, database: str, unique: Callable[[str], str]
) -> AsyncIterator[GatewayProcess]:
    env = standalone_env(infra, database, unique("edge"))
    # The topic it posts to exists, or aiokafka logs an error at each metadata refresh.
    await ensure_topics(infra.kafka_bootstrap, [env["TOPIC"]], partitions=1)
    env |= {
        "SIGNIN_MAX_FAILURES": "3",
        "HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "BODY_TIMEOUT": str(BODY_TIMEOUT),
    }
    async with serving_gateway(env) as process:
        yield process


@pytest.fixture(scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _assert_error_body(response: RawResponse, codes: tuple[str, ...] = ("4000",)) -> None:
    assert response.headers["content-type"].startswith("application/json"), response
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    assert body["object"] == "error" and body["code"] in codes, body
    assert response.status == int(body["code"][:3])


# --- sign-in under the variants of a locked-out name --------------------------------------


async def _sign_in(http: aiohttp.ClientSession, url: str, name: str, password: str) -> str:
    body = {"username": name, "password": password}
    async with http.post(f"{url}/v1/auth/sign-in", json=body) as resp:
        data = await resp.json()
        return str(data["code"]) if resp.status != 200 else "200"


@pytest.fixture(scope="module")
async def alice_locked_out(gateway: GatewayProcess, http: aiohttp.ClientSession) -> str:
    for name in ("alice", "bobby"):
        body = {"username": name, "password": PASSWORD, "passwordConfirm": PASSWORD}
        async with http.post(f"{gateway.url}/v1/auth/sign-up", json={**body, "gender": "f"}) as r:
            assert r.status == 201, await r.text()
    for _ in range(3):
        assert await _sign_in(http, gateway.url, "alice", "wrong-password") == "4011"
    assert await _sign_in(http, gateway.url, "alice", PASSWORD) == "4290"
    return "alice"


async def test_the_issue_variants_collate_as_alice_and_none_of_them_signs_in(
    infra: LocalSettings,
    database: str,
    gateway: GatewayProcess,
    http: aiohttp.ClientSession,
    alice_locked_out: str,
) -> None:
    conn = await mysql_connect(infra, database)
    try:
        async with conn.cursor() as cur:
            for variant in ISSUE_VARIANTS:
                # What found alice's row before the canonical column existed.
                await cur.execute(
                    "SELECT %s = _utf8mb4'alice' COLLATE utf8mb4_unicode_ci", (variant,)
                )
                assert (await cur.fetchone())[0] == 1, repr(variant)
    finally:
        conn.close()
    for variant in ISSUE_VARIANTS:
        code = await _sign_in(http, gateway.url, variant, PASSWORD)
        assert code in ("4290", "4000"), repr(variant)
    assert await _sign_in(http, gateway.url, "bobby", PASSWORD) == "200"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(variant=variants("alice"))
async def test_no_generated_variant_of_the_locked_out_name_signs_in(
    gateway: GatewayProcess, http: aiohttp.ClientSession, alice_locked_out: str, variant: str
) -> None:
    code = await _sign_in(http, gateway.url, variant, PASSWORD)
    assert code in ("4290", "4000"), repr(variant)


# --- what the HTTP parser refuses is answered in JSON ----------------------------------------

MALFORMED = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"POST /v1/auth/sign-in HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", MALFORMED, ids=range(len(MALFORMED)))
async def test_malformed_requests_get_the_platform_error_body(
    gateway: GatewayProcess, request_bytes: bytes
) -> None:
    response = await exchange(gateway.port, request_bytes)
    assert response is not None
    _assert_error_body(response, ("4000", "4130"))


_TOKEN = st.binary(min_size=1, max_size=30)


@st.composite
def _broken_requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"G\x00T", b"", b"get"]) | _TOKEN)
    target = draw(st.sampled_from([b"/health", b"", b"*", b"/v1/chats"]) | _TOKEN)
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.x", b""]) | _TOKEN)
    headers = draw(st.lists(st.tuples(_TOKEN, st.binary(max_size=60)), max_size=5))
    lines = [b" ".join([method, target, version])]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n"


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request_bytes=_broken_requests())
async def test_any_request_head_is_answered_in_json_or_closed(
    gateway: GatewayProcess, request_bytes: bytes
) -> None:
    response = await exchange(gateway.port, request_bytes)
    if response is None:
        return  # closed without a word: nothing leaked either
    assert response.headers.get("content-type", "").startswith("application/json"), response
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.status < 500
    if response.status >= 400:
        body = response.json()
        assert body["object"] == "error" and response.status == int(body["code"][:3])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    encoding=st.sampled_from([b"gzip", b"deflate", b"br", b"zstd", b"identity"]),
    body=st.binary(min_size=1, max_size=200),
    chunked=st.booleans(),
)
async def test_a_body_that_cannot_be_decoded_is_4000_and_no_error_is_logged(
    gateway: GatewayProcess, encoding: bytes, body: bytes, chunked: bool
) -> None:
    framing = (
        b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\nzz\r\n"
        if chunked
        else b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    head = b"POST /v1/auth/sign-in HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    response = await exchange(
        gateway.port, head + b"Content-Encoding: " + encoding + b"\r\n" + framing
    )
    assert response is not None
    assert response.status < 500 and response.json()["object"] in ("error", "token")
    assert gateway.error_lines() == []


# --- slow clients ------------------------------------------------------------------------------


async def _trickle(port: int, start: bytes, drip: bytes) -> tuple[bytes, int]:
    """Send `start`, then one byte of `drip` every 0.1 s until the server closes;
    returns what the server sent and how many bytes were dripped."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.create_task(read_to_close(reader))
    dripped = 0
    try:
        writer.write(start)
        while not answer.done() and dripped < TRICKLE_FOR * 10:
            with contextlib.suppress(ConnectionError):
                writer.write(drip[dripped % len(drip) : dripped % len(drip) + 1])
                await writer.drain()
            dripped += 1
            await hold(0.1)  # the trickle itself: the scenario, not a synchronisation
        assert answer.done(), f"server still waiting after {dripped} dripped bytes"
        return await answer, dripped
    finally:
        answer.cancel()
        writer.close()


async def test_a_trickled_request_head_is_cut_off(gateway: GatewayProcess) -> None:
    answer, dripped = await _trickle(
        gateway.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"abcdefgh"
    )
    assert answer == b""  # closed: a head that never completes gets no answer
    assert dripped < TRICKLE_FOR * 10


async def test_a_trickled_body_is_4080_and_closed(gateway: GatewayProcess) -> None:
    head = (
        b"POST /v1/auth/sign-in HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10000\r\n\r\n"
    )
    answer, _ = await _trickle(gateway.port, head + b'{"username": "', b"aaaaaaaa")
    response = parse(answer)
    assert response is not None
    _assert_error_body(response, ("4080",))
    assert response.headers["connection"].lower() == "close"


async def test_connections_beyond_the_cap_are_closed_and_slots_come_back(
    infra: LocalSettings, database: str, unique: Callable[[str], str]
) -> None:
    env = standalone_env(infra, database, unique("cap")) | {
        "MAX_CONNECTIONS": str(CAP),
        "HEADER_TIMEOUT": "120",
    }
    async with serving_gateway(env) as process:
        held = []
        try:
            # wait_serving's session has closed its connection; let the server see it.
            await eventually(lambda: _served(process.port), what="a free slot")
            for _ in range(CAP):
                held.append(await _keep_alive(process.port))
            reader, writer = await asyncio.open_connection("127.0.0.1", process.port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            async with asyncio.timeout(10):
                assert await read_to_close(reader) == b""  # closed, unanswered
            writer.close()
        finally:
            for writer in held:
                writer.close()
        assert await eventually(lambda: _served(process.port), what="a slot after closing")
        refused = [line for line in process.log_lines() if "refused" in line]
        assert any("MAX_CONNECTIONS" in line for line in refused)


async def _keep_alive(port: int) -> asyncio.StreamWriter:
    """A connection that got one answer and stays open (keep-alive)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    async with asyncio.timeout(10):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return writer


async def _served(port: int) -> bool:
    response = await exchange(
        port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", within=5
    )
    return response is not None and response.status == 200


# --- ops endpoints, headers and the log ---------------------------------------------------------


async def test_metrics_need_the_admin_token(
    gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{gateway.url}/metrics") as resp:
        assert resp.status == 401 and (await resp.json())["code"] == "4010"
    headers = {"Authorization": f"Bearer {LOCAL_ADMIN_TOKEN}"}
    async with http.get(f"{gateway.url}/metrics", headers=headers) as resp:
        assert resp.status == 200 and "gateway_http_requests_total" in await resp.text()
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "no-store"


async def _error_counts(gateway: GatewayProcess, http: aiohttp.ClientSession) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {LOCAL_ADMIN_TOKEN}"}
    async with http.get(f"{gateway.url}/metrics", headers=headers) as resp:
        text = await resp.text()
    return {
        sample.labels["code"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "gateway_errors_total"
    }


async def test_every_error_answer_is_counted_by_its_code(
    gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    before = await _error_counts(gateway, http)
    answers = [
        await exchange(gateway.port, b"GET /health HTTP/1.1\r\nHost: x\r\nX\x00: y\r\n\r\n"),
        await exchange(gateway.port, b"GET /no-such-route HTTP/1.1\r\nHost: x\r\n\r\n"),
        await exchange(gateway.port, b"DELETE /health HTTP/1.1\r\nHost: x\r\n\r\n"),
    ]
    async with http.post(f"{gateway.url}/v1/auth/sign-in", data=b"x" * 100_000) as resp:
        assert resp.status == 413
    codes = [answer.json()["code"] if answer else None for answer in answers]
    assert codes == ["4000", "4040", "4050"]
    after = await _error_counts(gateway, http)
    for code in ("4000", "4040", "4050", "4130"):
        assert after.get(code, 0) == before.get(code, 0) + 1, (code, before, after)


async def test_a_client_leaving_mid_body_is_no_error_and_long_paths_are_clipped(
    gateway: GatewayProcess, http: aiohttp.ClientSession
) -> None:
    for _ in range(3):
        _, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(
            b'POST /v1/auth/sign-in HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{"user'
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    long_path = "/x" + "y" * 5000
    async with http.get(f"{gateway.url}{long_path}") as resp:
        assert resp.status == 404

    def access_line() -> list[str]:
        return [line for line in gateway.log_lines() if "GET /xyyy" in line]

    lines = await eventually(access_line, what="the access line of the long path")
    assert all(len(line) < 1000 and "more)" in line for line in lines)
    assert gateway.error_lines() == []


def _run_gateway(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway"]
    full = {"PATH": os.environ["PATH"], "GATEWAY_PORT": str(free_port()), **env}
    return subprocess.run(command, env=full, capture_output=True, text=True, timeout=60)


async def test_a_gateway_that_cannot_start_says_why_in_one_line(
    infra: LocalSettings, database: str, unique: Callable[[str], str]
) -> None:
    """MySQL unreachable, or the port taken: one error line with the reason, exit 1 (it
    printed a 100-line chained traceback with the reason at its end)."""
    env = standalone_env(infra, database, unique("nostart"))
    closed = free_port()  # nothing listens there
    away = await asyncio.to_thread(
        _run_gateway, env | {"MYSQL_PORT": str(closed), "MYSQL_CONNECT_WAIT": "0"}
    )
    assert away.returncode == 1, away.stderr[-2000:]
    assert "Traceback" not in away.stderr, away.stderr[-2000:]
    assert f"cannot start: MySQL at {infra.host}:{closed} unreachable" in away.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = await asyncio.to_thread(_run_gateway, env | {"GATEWAY_PORT": str(port)})
    assert busy.returncode == 1 and "Traceback" not in busy.stderr, busy.stderr[-2000:]
    assert f"cannot start: cannot listen on 127.0.0.1:{port}" in busy.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOG_LEVEL", "verbose"),
        ("MYSQL_PORT", "99999"),
        ("KAFKA_BOOTSTRAP", "kafka:notaport"),
        ("CONSUL_URL", "ftp://consul"),
        ("STREAM_HEARTBEAT", "inf"),
    ],
)
async def test_a_setting_that_cannot_work_is_refused_naming_it(
    infra: LocalSettings, database: str, name: str, value: str
) -> None:
    """Each used to pass and fail later: a traceback from logging's set-up or aiomysql,
    Kafka or Consul failing after MySQL connected, or every stream refused (ceil(inf))."""
    env = standalone_env(infra, database, "badsetting") | {name: value}
    refused = await asyncio.to_thread(_run_gateway, env)
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert "invalid configuration" in refused.stderr and name.lower() in refused.stderr
    assert "Traceback" not in refused.stderr
