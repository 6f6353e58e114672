"""The gateway as a user drives it: real MariaDB, Kafka, FerretDB, a private Consul agent,
two real workers and `python -m gateway` as a subprocess.

The workers always register as service "dialogue", so this module runs its own Consul
agent: other test sessions' workers on the shared agent never answer our reads.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from infra.local import LocalSettings
from infra.processes.gateway import (
    ISSUER,
    JWT_SECRET,
    MAX_BODY,
    GatewayProcess,
    gateway_env,
    scratch_database,
)
from infra.processes.private import free_range, private_stack
from infra.processes.worker import WorkerProcess
from tests.support.api_user import Api
from tests.support.faults import Platform
from tests.support.waiting import WITHIN, eventually

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
async def workers(
    infra: LocalSettings, unique: Callable[[str], str], consul_url: str
) -> AsyncIterator[list[WorkerProcess]]:
    first = WorkerProcess.for_test(infra, unique, consul_url=consul_url)
    pair = [first, first.sibling(unique("worker"))]
    for worker in pair:
        worker.start()
    try:
        await asyncio.gather(*(w.wait_ready(90) for w in pair))
        yield pair
    finally:
        await asyncio.gather(*(w.terminate() for w in pair), return_exceptions=True)


@pytest.fixture(scope="module")
async def database(infra: LocalSettings, run_id: str) -> AsyncIterator[str]:
    async with scratch_database(infra, f"gw_e2e_{run_id}") as name:
        yield name


@pytest.fixture(scope="module")
async def gateway(
    infra: LocalSettings, database: str, workers: list[WorkerProcess], consul_url: str
) -> AsyncIterator[GatewayProcess]:
    process = GatewayProcess(gateway_env(infra, database, workers[0], consul_url)).start()
    try:
        yield await process.wait_ready()
    finally:
        await process.stop()


@pytest.fixture
async def api(gateway: GatewayProcess) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, gateway.url)


def _name(unique: Callable[[str], str], prefix: str) -> str:
    return prefix + unique("")[-12:].replace("-", "")


def expect(answer: tuple[int, Any], code: str) -> None:
    status, body = answer
    assert (status, body["object"], body["code"]) == (int(code[:3]), "error", code), body


async def _chat(api: Api, token: str, users: list[int]) -> str:
    status, chat = await api.call("POST", "/v1/chats", token, json={"users": users})
    assert status == 201, chat
    return str(chat["id"])


async def test_full_user_flow(api: Api, unique: Callable[[str], str]) -> None:
    alice_name, bob_name = _name(unique, "alice"), _name(unique, "bob")
    alice, bob = await api.sign_up(alice_name), await api.sign_up(bob_name)
    status, signed = await api.call(
        "POST", "/v1/auth/sign-in", json={"username": bob_name, "password": "secret1", "x": 1}
    )
    assert status == 200 and signed["userId"] == bob["userId"] and signed["object"] == "token"
    a, b = alice["token"], signed["token"]
    status, me = await api.call("GET", "/v1/users/me", a)
    assert (status, me["id"], me["username"]) == (200, alice["userId"], alice_name)

    cid = await _chat(api, a, [alice["userId"], bob["userId"]])
    posted = []
    for i in range(7):
        status, message = await api.call(
            "POST", f"/v1/chats/{cid}/messages", a if i % 2 else b, json={"txt": f"m{i}"}
        )
        assert status == 202 and message["object"] == "message" and message["cid"] == cid
        posted.append(message)

    newest_first = [m["id"] for m in reversed(posted)]
    _, page = await eventually(
        lambda: api.call("GET", f"/v1/chats/{cid}/messages?limit=50", a),
        lambda answer: [m["id"] for m in answer[1]["data"]] == newest_first,
        what="the seven messages, newest first",
    )
    # Kafka order: each post was answered before the next was sent.
    assert [m["seq"] for m in page["data"]] == list(range(7, 0, -1))
    assert page["data"][0] == {**posted[-1], "seq": 7}  # the 202 has no seq yet

    seen: list[str] = []
    query = "limit=3"
    while True:
        status, page = await api.call("GET", f"/v1/chats/{cid}/messages?{query}", b)
        assert status == 200 and len(page["data"]) <= 3
        seen += [m["id"] for m in page["data"]]
        if page["nextCursor"] is None:
            break
        query = f"limit=3&before={page['nextCursor']}"
    assert seen == newest_first

    status, newer = await api.call(
        "GET", f"/v1/chats/{cid}/messages?after={posted[3]['id']}&limit=50", a
    )
    assert status == 200 and {m["id"] for m in newer["data"]} == set(newest_first[:3])

    status, by_seq = await api.call("GET", f"/v1/chats/{cid}/messages?afterSeq=5", a)
    assert status == 200 and [m["seq"] for m in by_seq["data"]] == [7, 6]

    # The chat list is by last activity: a chat opened after cid's last message ranks
    # first, until cid gets a new one.
    other = await _chat(api, b, [bob["userId"], alice["userId"]])
    status, chats = await api.call("GET", "/v1/chats?limit=50", a)
    assert status == 200 and chats["object"] == "list"
    assert [c["id"] for c in chats["data"]] == [other, cid]
    fresh, busy = chats["data"]
    assert (fresh["lastSeq"], fresh["lastMessage"], fresh["unread"]) == (0, None, 0)
    assert (busy["lastSeq"], busy["readSeq"], busy["unread"]) == (7, 0, 7)
    last = posted[-1]
    preview = {k: last[k] for k in ("id", "uid", "text", "createdAt")}
    assert busy["lastMessage"] == {**preview, "seq": 7}

    read = f"/v1/chats/{cid}/read"
    marker = {"object": "readMarker", "cid": cid, "seq": 5, "unread": 2}
    assert await api.call("PUT", read, a, json={"seq": 5}) == (200, marker)
    assert await api.call("PUT", read, a, json={"seq": 3}) == (200, marker)  # forward only
    status, _ = await api.call("POST", f"/v1/chats/{cid}/messages", b, json={"txt": "again"})
    assert status == 202
    _, chats = await eventually(
        lambda: api.call("GET", "/v1/chats?limit=50", a),
        lambda answer: answer[1]["data"][0]["id"] == cid,
        what="the chat with the new message first",
    )
    assert [(c["id"], c["lastSeq"], c["unread"]) for c in chats["data"]] == [
        (cid, 8, 3),
        (other, 0, 0),
    ]
    clamped = {"object": "readMarker", "cid": cid, "seq": 8, "unread": 0}
    assert await api.call("PUT", read, a, json={"seq": 10**6}) == (200, clamped)
    status, bobs = await api.call("GET", f"/v1/chats/{cid}", b)
    assert (status, bobs["readSeq"], bobs["unread"]) == (200, 0, 8)  # markers are per user


async def test_a_posted_message_becomes_readable_by_the_other_member(
    api: Api, unique: Callable[[str], str]
) -> None:
    """How fast: bench/gateway_bench.py prints POST -> readable through the gateway."""
    alice, bob = await api.sign_up(_name(unique, "rd")), await api.sign_up(_name(unique, "rd"))
    cid = await _chat(api, alice["token"], [alice["userId"], bob["userId"]])
    path = f"/v1/chats/{cid}/messages"
    status, message = await api.call("POST", path, alice["token"], json={"txt": "fast"})
    assert status == 202

    async def newest() -> list[Any]:
        status, page = await api.call("GET", path, bob["token"])
        assert status == 200, page
        return list(page["data"])

    data = await eventually(newest, bool, what="the message read")
    assert data[0] == {**message, "seq": 1}


async def test_every_client_error_code(api: Api, unique: Callable[[str], str]) -> None:
    alice, bob, eve = [await api.sign_up(_name(unique, n)) for n in ("ea", "eb", "ee")]
    a, e = alice["token"], eve["token"]
    cid = await _chat(api, a, [alice["userId"], bob["userId"]])
    msgs = f"/v1/chats/{cid}/messages"

    expect(await api.call("GET", "/v1/nope", a), "4040")
    expect(await api.call("DELETE", "/v1/chats", a), "4050")
    expect(await api.call("POST", "/v1/chats", a, data=b"{not json"), "4000")
    expect(await api.call("POST", msgs, a, data=b"x" * (MAX_BODY + 1)), "4130")
    expect(await api.call("GET", "/v1/chats/not-an-id", a), "4001")
    expect(await api.call("POST", "/v1/chats", a, json={"users": [alice["userId"], "b"]}), "4002")
    expect(await api.call("POST", msgs, a, json={"txt": "   "}), "4003")
    expect(await api.call("POST", msgs, a, json={"txt": "x" * 4097}), "4003")
    expect(await api.call("POST", "/v1/chats", a, json={"users": [alice["userId"]] * 2}), "4004")
    expect(await api.call("GET", f"{msgs}?limit=0", a), "4005")
    expect(await api.call("GET", f"{msgs}?before=zzz", a), "4005")
    expect(await api.call("GET", "/v1/chats?cursor=nope", a), "4005")
    expect(await api.call("GET", "/v1/users/me"), "4010")
    expect(await api.call("GET", "/v1/users/me", "garbage"), "4011")
    pair = [bob["userId"], eve["userId"]]
    expect(await api.call("POST", "/v1/chats", a, json={"users": pair}), "4030")
    expect(await api.call("GET", f"/v1/chats/{cid}", e), "4031")
    expect(await api.call("GET", msgs, e), "4031")
    expect(await api.call("POST", msgs, e, json={"txt": "let me in"}), "4031")
    expect(await api.call("PUT", f"/v1/chats/{cid}", e, json={"users": [eve["userId"]]}), "4031")
    expect(await api.call("GET", "/v1/chats/65f0c0ffee0123456789abcd", a), "4040")
    status, body = await api.call("POST", "/v1/chats", a, json={"users": [alice["userId"], 10**9]})
    expect((status, body), "4040")
    assert str(10**9) in body["message"]
    form = {"username": alice["username"], "password": "secret1", "passwordConfirm": "secret1"}
    expect(await api.call("POST", "/v1/auth/sign-up", json={**form, "gender": "m"}), "4090")

    wrong = {"username": eve["username"], "password": "not-it"}
    for _ in range(3):
        expect(await api.call("POST", "/v1/auth/sign-in", json=wrong), "4011")
    expect(
        await api.call("POST", "/v1/auth/sign-in", json={**wrong, "password": "secret1"}), "4290"
    )
    right = {"username": alice["username"], "password": "secret1"}
    assert (await api.call("POST", "/v1/auth/sign-in", json=right))[0] == 200

    status, chat = await api.call("PUT", f"/v1/chats/{cid}", a, json={"users": [eve["userId"]]})
    assert status == 200 and eve["userId"] in chat["users"]
    assert (await api.call("POST", msgs, e, json={"txt": "now I am in"}))[0] == 202


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


async def test_tampered_expired_and_unsigned_tokens_get_4011(
    api: Api, unique: Callable[[str], str]
) -> None:
    user = await api.sign_up(_name(unique, "tok"))
    header, payload, signature = user["token"].split(".")
    claims = jwt.decode(user["token"], JWT_SECRET, algorithms=["HS256"], issuer=ISSUER)
    tampered = f"{header}.{_b64({**claims, 'user_id': 1, 'sub': '1'})}.{signature}"
    expired = jwt.encode({**claims, "iat": 1, "exp": 2}, JWT_SECRET, algorithm="HS256")
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    other_alg = jwt.encode(claims, JWT_SECRET + JWT_SECRET, algorithm="HS512")
    for token in (tampered, expired, unsigned, other_alg, user["token"][:-2]):
        expect(await api.call("GET", "/v1/users/me", token), "4011")
        expect(await api.call("GET", "/v1/chats", token), "4011")
    assert (await api.call("GET", "/v1/users/me", user["token"]))[0] == 200


async def _records_with_id(bootstrap: str, topic: str, message_id: str) -> int:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        ends = await consumer.end_offsets(list(consumer.assignment()))
        count = 0

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            batch = await consumer.getmany(timeout_ms=2000)
            for records in batch.values():
                count += sum(1 for r in records if r.value and message_id.encode() in r.value)
        return count
    finally:
        await consumer.stop()


async def test_idempotency_key_produces_once(
    api: Api, unique: Callable[[str], str], infra: LocalSettings, workers: list[WorkerProcess]
) -> None:
    alice, bob = await api.sign_up(_name(unique, "idem")), await api.sign_up(_name(unique, "idem"))
    cid = await _chat(api, alice["token"], [alice["userId"], bob["userId"]])
    headers = {"Idempotency-Key": unique("key")}
    answers = [
        await api.call(
            "POST",
            f"/v1/chats/{cid}/messages",
            alice["token"],
            json={"txt": "once"},
            headers=headers,
        )
        for _ in range(3)
    ]
    assert {status for status, _ in answers} == {202}
    ids = {body["id"] for _, body in answers}
    assert len(ids) == 1
    assert await _records_with_id(infra.kafka_bootstrap, workers[0].topic, ids.pop()) == 1


async def test_admin_view_and_metrics(api: Api, gateway: GatewayProcess) -> None:
    from platform_common.local import LOCAL_ADMIN_TOKEN

    status, body = await api.call("GET", "/v1/admin/instances", LOCAL_ADMIN_TOKEN)
    assert status == 200 and len(body["data"]) == 2
    assert sum(i["requests"] for i in body["data"]) > 0
    async with api.http.get(f"{gateway.url}/metrics") as resp:
        assert resp.status == 401  # Prometheus text only for the admin token
    admin = {"Authorization": f"Bearer {LOCAL_ADMIN_TOKEN}"}
    async with api.http.get(f"{gateway.url}/metrics", headers=admin) as resp:
        text = await resp.text()
    assert resp.status == 200 and "gateway_upstream_requests_total" in text
    status, ready = await api.call("GET", "/ready")
    assert status == 200 and ready["ready"] is True


async def test_schemathesis_finds_no_server_error(
    api: Api, gateway: GatewayProcess, unique: Callable[[str], str], tmp_path: Path
) -> None:
    token = (await api.sign_up(_name(unique, "fuzz")))["token"]
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{gateway.url}/v1/openapi.json",
        "--url",
        gateway.url,
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "12",
        "--seed",
        "20240501",
        "--phases",
        "examples,coverage,fuzzing",
        "--request-timeout",
        "10",
        "--workers",
        "1",
        "--no-color",
        "--generation-database",
        "none",
        "-H",
        f"Authorization: Bearer {token}",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    finally:
        if proc.returncode is None:  # it did not finish within the bound
            proc.kill()
            await proc.wait()
    text = output.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:] + gateway.tail()
    print(text[-1500:])


async def test_kafka_stopped_gives_5031_and_never_202(
    api: Api,
    unique: Callable[[str], str],
    infra: LocalSettings,
    database: str,
    workers: list[WorkerProcess],
    consul_url: str,
    tmp_path: Path,
) -> None:
    alice, bob = await api.sign_up(_name(unique, "bus")), await api.sign_up(_name(unique, "bus"))
    cid = await _chat(api, alice["token"], [alice["userId"], bob["userId"]])
    base = free_range(2)  # two calls of free_port() could give one port twice
    ports = {"LOCAL_KAFKA_PORT": str(base), "LOCAL_KAFKA_CONTROLLER_PORT": str(base + 1)}
    # A private broker, so killing it disturbs no other test (starting it blocks ~10 s).
    with private_stack(tmp_path, infra.cache_dir, ["kafka"], ports) as kafka:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("gw-e2e", 1, 1), NewTopic("gw-e2e.events", 1, 1)])
        finally:
            await admin.close()
        env = gateway_env(infra, database, workers[0], consul_url)
        env |= {
            "KAFKA_BOOTSTRAP": kafka.settings.kafka_bootstrap,
            "TOPIC": "gw-e2e",
            "EVENTS_TOPIC": "gw-e2e.events",
        }
        lone = GatewayProcess(env).start()
        try:
            await lone.wait_ready()
            other = Api(api.http, lone.url)
            path = f"/v1/chats/{cid}/messages"
            answer = await other.call("POST", path, alice["token"], json={"txt": "before"})
            assert answer[0] == 202
            kafka.kill("kafka")
            for i in range(3):
                async with asyncio.timeout(WITHIN):  # an answer, not a hang (the figure: faults)
                    answer = await other.call(
                        "POST", path, alice["token"], json={"txt": f"after {i}"}
                    )
                expect(answer, "5031")
            status, ready = await other.call("GET", "/ready")
            assert status == 503 and ready["checks"]["kafka"]["ok"] is False
        finally:
            await lone.stop()


async def test_reads_survive_a_sigkilled_worker(
    infra: LocalSettings, unique: Callable[[str], str], consul_url: str
) -> None:
    """SIGKILLs a worker of a platform of its own: the module's workers stay up."""
    async with (
        Platform.start(infra, unique, consul_url=consul_url) as platform,
        aiohttp.ClientSession() as http,
    ):
        api = Api(http, platform.gateway.url)
        alice = await api.sign_up(_name(unique, "kill"))
        bob = await api.sign_up(_name(unique, "kill"))
        a = alice["token"]
        cid = await _chat(api, a, [alice["userId"], bob["userId"]])
        posted = await api.call("POST", f"/v1/chats/{cid}/messages", a, json={"txt": "hi"})
        assert posted[0] == 202
        statuses: list[int] = []
        stop = asyncio.Event()

        async def reads(count: int) -> None:
            for _ in range(count):
                if stop.is_set():
                    return
                statuses.append((await api.call("GET", f"/v1/chats/{cid}/messages", a))[0])
                statuses.append((await api.call("GET", f"/v1/chats/{cid}", a))[0])

        readers = [asyncio.create_task(reads(500)) for _ in range(4)]
        try:
            await eventually(lambda: len(statuses) >= 8, what="reads before the kill")
            platform.workers[0].kill()
            at_kill = len(statuses)
            await eventually(lambda: len(statuses) >= at_kill + 80, what="reads after the kill")
        finally:
            stop.set()
            await asyncio.gather(*readers)
        await reads(20)
    assert set(statuses) == {200}, statuses
