"""Kept chat lists with real workers, Kafka and FerretDB: two workers of one group, a write
answered by one shows at once in a list from the other (no waiting: the list waits until
its worker read the events published before it), and events no write stands behind
change no list."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from contracts.events import ChatRead, MessageCreated
from contracts.ids import new_id
from contracts.records import MessageRecord
from infra.local import LocalSettings
from infra.processes.worker import WorkerProcess, produce
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
async def pair(
    infra: LocalSettings, unique: Callable[[str], str]
) -> AsyncIterator[tuple[WorkerProcess, WorkerProcess]]:
    first = WorkerProcess.for_test(infra, unique)
    second = first.sibling(unique("worker"))
    try:
        await first.start().wait_ready()
        await second.start().wait_ready()
        yield first, second
    finally:
        for worker in (first, second):
            await worker.terminate()


async def call(worker: WorkerProcess, method: str, path: str, **kwargs: Any) -> Any:
    async with aiohttp.ClientSession(base_url=worker.base_url, headers=worker.headers) as http:
        async with http.request(method, path, **kwargs) as resp:
            assert resp.status in (200, 201), await resp.text()
            return await resp.json()


async def kept_lists(worker: WorkerProcess) -> float:
    """Lists the worker gave from what it keeps (its metric's `kept` sample)."""
    return await worker.metric('dialogue_worker_chat_lists_total{source="kept"}')


async def listed(worker: WorkerProcess, uid: int) -> dict[str, Any]:
    page = await call(worker, "GET", "/chats", params={"uid": str(uid), "limit": "100"})
    return {chat["id"]: chat for chat in page["data"]}


async def listed_kept(worker: WorkerProcess, uid: int) -> dict[str, Any]:
    """A list the worker gave from what it keeps (not read from the store because its
    events feed could not vouch for it): the `kept` count goes up by one."""
    before = await kept_lists(worker)
    found = await listed(worker, uid)
    assert await kept_lists(worker) == before + 1
    return found


async def test_a_write_through_one_worker_is_in_the_next_list_of_the_other(
    infra: LocalSettings, pair: tuple[WorkerProcess, WorkerProcess]
) -> None:
    writer, reader = pair
    first = await call(writer, "POST", "/chats", json={"users": [1, 2]})

    async def kept() -> float:
        await listed(reader, 1)
        return await kept_lists(reader)

    # Kept once the reader's events feed reads the topic (the first list reads whole).
    await eventually(kept, lambda n: n > 0, what="a kept list")

    record = MessageRecord(
        v=1, id=new_id(), cid=first["id"], uid=2, text="hello", createdAt=1_700_000_000
    )
    await produce(infra.kafka_bootstrap, writer.topic, [(record.key(), record.to_bytes())])
    await eventually(
        lambda: listed(reader, 1),
        lambda chats: chats[first["id"]]["lastSeq"] == 1,
        what="the message in the kept list",
    )
    assert (await listed(reader, 1))[first["id"]]["lastMessage"]["text"] == "hello"

    # Each of these is answered by the writer, then listed by the reader at once.
    marker = await call(writer, "PUT", f"/chats/{first['id']}/read", params={"uid": "1"},
                        json={"seq": 1})  # fmt: skip
    assert marker["unread"] == 0
    assert (await listed_kept(reader, 1))[first["id"]]["readSeq"] == 1

    second = await call(writer, "POST", "/chats", json={"users": [1, 3]})
    assert second["id"] in await listed_kept(reader, 1)

    third = await call(writer, "POST", "/chats", json={"users": [5, 6]})
    await call(writer, "PUT", f"/chats/{third['id']}", params={"uid": "5"}, json={"users": [1]})
    mine = await listed_kept(reader, 1)
    assert mine[third["id"]]["users"] == [1, 5, 6]
    assert set(mine) == {first["id"], second["id"], third["id"]}


async def test_events_no_write_stands_behind_change_no_list(
    infra: LocalSettings, pair: tuple[WorkerProcess, WorkerProcess]
) -> None:
    writer, reader = pair
    chat = await call(writer, "POST", "/chats", json={"users": [7, 8]})
    before = await listed(reader, 7)
    assert before[chat["id"]]["lastSeq"] == 0
    stored = MessageRecord(
        v=1, id=new_id(), cid=chat["id"], uid=8, text="x", createdAt=1_700_000_000
    )
    forged = [
        ChatRead(cid=chat["id"], uid=7, seq=10**9),
        MessageCreated.model_validate(
            {"cid": chat["id"], "seq": 10**9, "message": stored.model_dump() | {"seq": 10**9}}
        ),
        ChatRead(cid=new_id(), uid=7, seq=5),
    ]
    await produce(
        infra.kafka_bootstrap, writer.events_topic, [(e.key(), e.to_bytes()) for e in forged]
    )
    # Kept: the reader has read the forged events before answering (its barrier).
    assert await listed_kept(reader, 7) == before


async def test_a_worker_without_kept_lists_reads_no_event(
    infra: LocalSettings, unique: Callable[[str], str], pair: tuple[WorkerProcess, WorkerProcess]
) -> None:
    """CHAT_LISTS_MAX=0 (docs/capacity.md: past ~10,000 messages/s a worker's share of
    reading every event grows): every list is read whole, and no events feed runs."""
    plain = WorkerProcess.for_test(infra, unique, env={"CHAT_LISTS_MAX": "0"})
    try:
        await plain.start().wait_ready()
        chat = await call(plain, "POST", "/chats", json={"users": [1, 2]})
        assert chat["id"] in await listed(plain, 1)
        assert await kept_lists(plain) == 0
    finally:
        await plain.terminate()
    assert "events feed reads" not in plain.log_text()
    reader = pair[1]  # a worker keeping lists says it reads the topic
    assert "events feed reads" in reader.log_text()
