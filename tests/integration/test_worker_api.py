"""The internal HTTP API of a real worker: chats, message paging, auth and error bodies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from contracts.ids import new_id
from contracts.records import MessageRecord
from infra.local import LocalSettings
from infra.processes.worker import WorkerProcess, produce
from tests.support.waiting import eventually


@pytest.fixture
async def http(worker: WorkerProcess) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=worker.base_url, headers=worker.headers) as s:
        yield s


async def call(
    http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, path, **kwargs) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


async def expect_error(
    http: aiohttp.ClientSession, code: str, method: str, path: str, **kw: Any
) -> None:
    status, body = await call(http, method, path, **kw)
    assert (status, body["object"], body["code"]) == (int(code[:3]), "error", code), body
    assert body["message"]


async def test_chat_lifecycle(http: aiohttp.ClientSession) -> None:
    status, chat = await call(http, "POST", "/chats", json={"users": [7, 3, 7]})
    assert status == 201 and chat["object"] == "chat" and chat["users"] == [3, 7]
    assert isinstance(chat["createdAt"], int) and len(chat["id"]) == 24

    assert await call(http, "GET", f"/chats/{chat['id']}", params={"uid": "3"}) == (200, chat)
    status, grown = await call(
        http, "PUT", f"/chats/{chat['id']}", params={"uid": "7"}, json={"users": [11, 3]}
    )
    assert status == 200 and grown["users"] == [3, 7, 11]

    await expect_error(http, "4031", "GET", f"/chats/{chat['id']}", params={"uid": "4"})
    await expect_error(
        http, "4031", "PUT", f"/chats/{chat['id']}", params={"uid": "4"}, json={"users": [4]}
    )
    await expect_error(http, "4040", "GET", f"/chats/{new_id()}", params={"uid": "3"})
    await expect_error(http, "4001", "GET", "/chats/not-an-id", params={"uid": "3"})
    await expect_error(http, "4002", "GET", f"/chats/{chat['id']}", params={"uid": "x"})
    await expect_error(http, "4004", "POST", "/chats", json={"users": [5, 5]})
    await expect_error(http, "4000", "POST", "/chats", data=b"{nope")
    await expect_error(http, "4000", "POST", "/chats", json={"people": [1, 2]})
    await expect_error(http, "4040", "GET", "/nowhere")
    await expect_error(http, "4040", "GET", "/")  # not faust's index page
    await expect_error(http, "4050", "DELETE", "/chats")
    async with http.delete("/chats") as resp:
        assert set(resp.headers["Allow"].split(",")) >= {"GET", "POST"}
    gzip = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    await expect_error(http, "4000", "POST", "/chats", data=b'{"users": [1, 2]}', headers=gzip)


async def test_a_chat_at_its_member_limit_takes_nobody_new(http: aiohttp.ClientSession) -> None:
    """MAX_CHAT_MEMBERS at its default, 1,000: as many as one request may name."""
    status, chat = await call(http, "POST", "/chats", json={"users": list(range(1, 1001))})
    assert status == 201 and len(chat["users"]) == 1000
    path, caller = f"/chats/{chat['id']}", {"uid": "1"}
    status, body = await call(http, "PUT", path, params=caller, json={"users": [5, 1001]})
    assert (status, body["code"]) == (409, "4091"), body
    assert body["message"].startswith("a chat has at most 1000 members: this one has 1000")
    status, same = await call(http, "PUT", path, params=caller, json={"users": [1000, 2]})
    assert status == 200 and same["users"] == list(range(1, 1001))  # members are no growth
    assert (await call(http, "GET", path, params=caller))[1]["users"] == same["users"]


async def test_user_chats_newest_first_with_a_cursor(http: aiohttp.ClientSession) -> None:
    uid = int(time.time() * 1000) % 1_000_000_000 + 1000  # a user no other test uses
    created = [(await call(http, "POST", "/chats", json={"users": [uid, 1]}))[1] for _ in range(5)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"uid": str(uid), "limit": "2"} | ({"cursor": cursor} if cursor else {})
        status, page = await call(http, "GET", "/chats", params=params)
        assert status == 200 and page["object"] == "list"
        seen += [c["id"] for c in page["data"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [c["id"] for c in reversed(created)]


async def test_the_chat_list_pages_exactly_while_the_chat_last_given_moves(
    http: aiohttp.ClientSession, worker: WorkerProcess, infra: LocalSettings
) -> None:
    """The last chat of a page gets a message before the next page is asked for: it keeps
    its place in the listing (it ranks as it stood when the listing began, which the
    worker reads back from its history) and is given once, as is every other chat."""
    uid = int(time.time() * 1000) % 1_000_000_000 + 2000  # a user no other test uses
    chats = [
        (await call(http, "POST", "/chats", json={"users": [uid, 1]}))[1]["id"] for _ in range(6)
    ]

    async def post(cid: str) -> None:
        _, before = await call(http, "GET", f"/chats/{cid}", params={"uid": str(uid)})
        message = MessageRecord(
            v=1, id=new_id(), cid=cid, uid=uid, text="hi", createdAt=int(time.time())
        )
        await produce(infra.kafka_bootstrap, worker.topic, [(message.key(), message.to_bytes())])

        async def counted() -> bool:
            _, chat = await call(http, "GET", f"/chats/{cid}", params={"uid": str(uid)})
            return bool(chat["lastSeq"] == before["lastSeq"] + 1)

        await eventually(counted, what=f"a message counted in {cid}")

    for cid in chats:  # activity in creation order, each from a message
        await post(cid)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"uid": str(uid), "limit": "2"} | ({"cursor": cursor} if cursor else {})
        _, page = await call(http, "GET", "/chats", params=params)
        seen += [c["id"] for c in page["data"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
        await post(seen[-1])  # the chat given last moves to the top
    assert seen == list(reversed(chats))


async def test_auth_and_request_id(worker: WorkerProcess) -> None:
    async with aiohttp.ClientSession(base_url=worker.base_url) as anonymous:
        await expect_error(anonymous, "4010", "GET", "/ping")
        await expect_error(
            anonymous, "4011", "GET", "/ping", headers={"Authorization": "Entrypoint nope"}
        )
        await expect_error(
            anonymous, "4011", "GET", "/ping", headers={"Authorization": f"Bearer {worker.token}"}
        )
        assert await _raw_status(worker, b"Authorization: Entrypoint \xff\xfe") == (401, "4011")
        headers = worker.headers | {"X-Request-ID": "req-123"}
        async with anonymous.get("/ping", headers=headers) as resp:
            assert resp.status == 200 and resp.headers["X-Request-ID"] == "req-123"
            pong = await resp.json()
    assert pong == {"object": "pong", "id": worker.service_id, "status": "passing", "reason": None}
    assert '"request_id":"req-123"' in worker.log_text()


async def _raw_status(worker: WorkerProcess, header: bytes) -> tuple[int, str]:
    """(status, error code) of a GET /ping sent with `header` as raw bytes (aiohttp's
    client encodes headers itself, so a non-UTF-8 one needs a plain socket)."""
    reader, writer = await asyncio.open_connection(worker.host, worker.port)
    try:
        writer.write(b"GET /ping HTTP/1.1\r\nHost: w\r\nConnection: close\r\n" + header)
        writer.write(b"\r\n\r\n")
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body)["code"]


async def test_paging_over_250_messages_returns_each_once_in_order(
    http: aiohttp.ClientSession, worker: WorkerProcess, infra: LocalSettings
) -> None:
    _, chat = await call(http, "POST", "/chats", json={"users": [1, 2]})
    cid = chat["id"]
    records = [
        MessageRecord(
            v=1, id=new_id(), cid=cid, uid=1 + i % 2, text=f"m{i}", createdAt=1_700_000_000 + i
        )
        for i in range(250)
    ]
    await produce(infra.kafka_bootstrap, worker.topic, [(r.key(), r.to_bytes()) for r in records])
    newest_first = [r.id for r in reversed(records)]

    after_last_but_one = {"uid": "2", "cid": cid, "limit": "1", "after": records[-2].id}

    async def newest_page() -> Any:
        return (await call(http, "GET", "/messages", params=after_last_but_one))[1]

    page = await eventually(newest_page, lambda page: page["data"], what="the last message")
    assert [m["id"] for m in page["data"]] == [records[-1].id]

    pages, cursor = [], None
    while True:
        params = {"uid": "1", "cid": cid, "limit": "100"} | ({"before": cursor} if cursor else {})
        status, page = await call(http, "GET", "/messages", params=params)
        assert status == 200
        pages.append(page["data"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [100, 100, 50]
    assert [m["id"] for p in pages for m in p] == newest_first
    first = pages[0][0]
    assert first == {
        "object": "message",
        "id": records[-1].id,
        "cid": cid,
        "uid": records[-1].uid,
        "createdAt": records[-1].createdAt,
        "text": "m249",
        "seq": 250,
    }
    assert [m["seq"] for p in pages for m in p] == list(range(250, 0, -1))  # gap-free, in order

    _, deep = await call(
        http, "GET", "/messages", params={"uid": "1", "cid": cid, "limit": "3", "beforeSeq": "101"}
    )
    assert [m["seq"] for m in deep["data"]] == [100, 99, 98]
    _, start = await call(
        http, "GET", "/messages", params={"uid": "1", "cid": cid, "limit": "2", "afterSeq": "0"}
    )
    assert [m["seq"] for m in start["data"]] == [2, 1]

    upward, cursor = [], records[0].id
    while cursor is not None:
        params = {"uid": "1", "cid": cid, "limit": "200", "after": cursor}
        _, page = await call(http, "GET", "/messages", params=params)
        upward.append([m["id"] for m in page["data"]])
        cursor = page["nextCursor"]
    assert [len(p) for p in upward] == [200, 49]
    assert upward[0] == newest_first[49:249] and upward[1] == newest_first[:49]

    for bad in (
        {"limit": "201"},
        {"limit": "0"},
        {"before": "x"},
        {"before": records[0].id, "after": records[1].id},
        {"beforeSeq": "5", "afterSeq": "1"},
        {"before": new_id()},  # not a message of this chat
    ):
        await expect_error(http, "4005", "GET", "/messages", params={"uid": "1", "cid": cid} | bad)
    await expect_error(http, "4031", "GET", "/messages", params={"uid": "3", "cid": cid})
    await expect_error(http, "4040", "GET", "/messages", params={"uid": "1", "cid": new_id()})
