"""Faults with real processes: a worker SIGKILLed mid-run, MongoDB stopped, two workers, twins."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from contracts.ids import new_id
from contracts.records import MessageRecord
from infra.local import LocalSettings, Stack
from infra.local.postgres import ROLE
from infra.processes.private import private_stack
from infra.processes.worker import WorkerProcess, free_port, produce
from tests.support.waiting import eventually

pytestmark = pytest.mark.faults
Mongo = AsyncMongoClient[dict[str, Any]]
FAST_TTL = {"HEARTBEAT_TTL": "3"}


async def api(worker: WorkerProcess, method: str, path: str, **kwargs: Any) -> Any:
    async with aiohttp.ClientSession(base_url=worker.base_url, headers=worker.headers) as http:
        async with http.request(method, path, **kwargs) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.json()


async def check_status(consul_url: str, service_id: str) -> str | None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{consul_url}/v1/agent/checks") as resp:
            checks = await resp.json()
    check = checks.get(f"service:{service_id}")
    return None if check is None else str(check["Status"])


def records_for(chats: list[str], n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        cid = chats[i % len(chats)]
        r = MessageRecord(
            v=1, id=new_id(), cid=cid, uid=1, text=f"m{i}", createdAt=1_700_000_000 + i
        )
        out.append((r.key(), r.to_bytes()))
    return out


async def new_chats(worker: WorkerProcess, n: int) -> list[str]:
    return [(await api(worker, "POST", "/chats", json={"users": [1, 2]}))["id"] for _ in range(n)]


@pytest.fixture
async def cleanup() -> AsyncIterator[list[WorkerProcess]]:
    workers: list[WorkerProcess] = []
    yield workers
    for w in workers:
        w.kill()


async def test_sigkill_mid_run_then_restart_gives_exactly_n(
    infra: LocalSettings, unique: Callable[[str], str], cleanup: list[WorkerProcess]
) -> None:
    worker = WorkerProcess.for_test(infra, unique, env=FAST_TTL | {"BATCH_SIZE": "100"})
    cleanup.append(worker)
    await worker.start().wait_ready()
    chats = await new_chats(worker, 6)
    assert await worker.terminate() == 0

    payload = records_for(chats, 10_000)
    await produce(infra.kafka_bootstrap, worker.topic, payload)
    mongo: Mongo = AsyncMongoClient(infra.mongo_url)
    messages = mongo[worker.mongo_db]["history"]
    try:
        worker.start()
        # Watch the worker's counter, not the collection: counting on FerretDB scans it.
        await eventually(lambda: _persisted_at_least(worker, 500), within=120)
        worker.kill()
        at_kill = await messages.count_documents({})

        await worker.start().wait_ready()
        # Not "persisted >= 10,000 - at_kill": an insert the killed worker sent can still
        # land after the count, and the new worker then counts it as a duplicate.
        await eventually(worker.committed_everything, within=180, every=1.0, what="all read")
        # Nothing can be redelivered late: the worker stopped with every offset committed.
        assert await worker.terminate() == 0
        assert await worker.committed_everything()
        ids = {d["id"] for d in await messages.find({}, {"id": 1}).to_list()}
        assert len(ids) == await messages.count_documents({}) == 10_000
        assert ids == {ObjectId(MessageRecord.model_validate_json(v).id) for _, v in payload}
        assert 0 < at_kill < 10_000, "the kill must land in the middle of the run"
    finally:
        await worker.terminate()
        await mongo.drop_database(worker.mongo_db)
        await mongo.close()


async def _at_least(messages: Any, n: int) -> bool:
    return bool(await messages.count_documents({}) >= n)


async def _persisted_at_least(worker: WorkerProcess, n: int) -> bool:
    try:
        return await worker.metric("dialogue_worker_records_persisted_total") >= n
    except aiohttp.ClientError:  # not listening yet
        return False


async def test_mongodb_outage_loses_nothing_and_shows_in_consul(
    infra: LocalSettings, unique: Callable[[str], str], tmp_path: Path, cleanup: list[WorkerProcess]
) -> None:
    ports = {"LOCAL_MONGO_PORT": str(free_port())}
    with private_stack(tmp_path, infra.cache_dir, ["ferretdb"], ports) as private:
        await _survive_outage(infra, unique, private, cleanup)


async def _survive_outage(
    infra: LocalSettings, unique: Callable[[str], str], private: Stack, cleanup: list[WorkerProcess]
) -> None:
    env = FAST_TTL | {"MONGO_TIMEOUT": "2", "RETRY_BACKOFF_MAX": "1"}
    worker = WorkerProcess.for_test(infra, unique, mongo_url=private.settings.mongo_url, env=env)
    cleanup.append(worker)
    mongo: Mongo = AsyncMongoClient(private.settings.mongo_url, timeoutMS=3000)
    messages = mongo[worker.mongo_db]["history"]
    try:
        await worker.start().wait_ready()
        chats = await new_chats(worker, 3)
        await produce(infra.kafka_bootstrap, worker.topic, records_for(chats, 300))
        await eventually(lambda: _at_least(messages, 300), what="300 stored")

        private.kill("ferretdb")
        await produce(infra.kafka_bootstrap, worker.topic, records_for(chats, 300))
        await eventually(lambda: _not_passing(infra, worker), what="not passing in Consul")
        pong = await api(worker, "GET", "/ping")
        assert pong["status"] == "critical" and pong["reason"]

        private.up(["ferretdb"])
        await eventually(lambda: _passing(infra, worker), what="passing again")
        await eventually(lambda: _at_least(messages, 600), what="600 stored")
        retries = await worker.metric("dialogue_worker_retries_total")
        assert retries > 0
        # Nothing more can come: the worker stopped with every offset committed.
        assert await worker.terminate() == 0
        assert await worker.committed_everything()
        assert await messages.count_documents({}) == 600
    finally:
        worker.kill()
        await mongo.close()


async def _not_passing(infra: LocalSettings, worker: WorkerProcess) -> bool:
    return await check_status(infra.consul_url, worker.service_id) in ("warning", "critical")


async def _passing(infra: LocalSettings, worker: WorkerProcess) -> bool:
    return await check_status(infra.consul_url, worker.service_id) == "passing"


async def test_two_workers_share_partitions_serve_reads_and_leave_cleanly(
    infra: LocalSettings, unique: Callable[[str], str], cleanup: list[WorkerProcess]
) -> None:
    first = WorkerProcess.for_test(infra, unique, partitions=6)
    second = first.sibling(unique("worker"))
    cleanup += [first, second]
    await first.start().wait_ready()
    await second.start().wait_ready()
    chats = await new_chats(first, 12)
    mongo: Mongo = AsyncMongoClient(infra.mongo_url)
    messages = mongo[first.mongo_db]["history"]
    produced = 0

    async def both_persisted() -> bool:
        nonlocal produced
        await produce(infra.kafka_bootstrap, first.topic, records_for(chats, 120))
        produced += 120
        await eventually(lambda: _at_least(messages, produced), what=f"{produced} stored")
        counts = [
            await w.metric("dialogue_worker_records_persisted_total") for w in (first, second)
        ]
        return all(c > 0 for c in counts)

    try:
        await eventually(both_persisted, what="both workers persisting")
        assert await messages.count_documents({}) == produced

        # History shows a message once its chat counts it, a step after the insert above.
        query = {"uid": "2", "cid": chats[0], "limit": "200"}
        for w in (first, second):
            await eventually(
                lambda w=w: api(w, "GET", "/messages", params=query),
                lambda page: len(page["data"]) == produced // 12,
                what=f"chat 0 complete through {w.service_id}",
            )
        seen = [await api(w, "GET", "/messages", params=query) for w in (first, second)]
        assert seen[0] == seen[1]
        assert await api(second, "GET", f"/chats/{chats[0]}", params={"uid": "1"})

        async with aiohttp.ClientSession() as http:
            url = f"{infra.consul_url}/v1/health/service/dialogue?passing=1"
            async with http.get(url) as resp:
                passing = {e["Service"]["ID"] for e in await resp.json()}
        assert {first.service_id, second.service_id} <= passing

        assert await second.terminate() == 0
        assert await check_status(infra.consul_url, second.service_id) is None
        log = second.log_text()
        assert log.index("deregistered") < log.index(f"worker {second.service_id} stopped")
        assert await first.terminate() == 0
        assert await first.committed_everything()
    finally:
        await mongo.drop_database(first.mongo_db)
        await mongo.close()


async def test_a_second_worker_with_the_same_id_is_refused(
    infra: LocalSettings, unique: Callable[[str], str], cleanup: list[WorkerProcess]
) -> None:
    env = {"HEARTBEAT_TTL": "2"}
    original = WorkerProcess.for_test(infra, unique, env=env)
    twin = original.sibling(original.service_id)
    cleanup += [original, twin]
    await original.start().wait_ready()

    twin.start()
    assert await twin.wait_exit(within=60) == 3
    assert "already running" in twin.log_text()
    # A heartbeat may lapse while the twin starts beside it (TTL 2 s): passing again soon.
    await eventually(
        lambda: check_status(infra.consul_url, original.service_id), lambda s: s == "passing"
    )
    assert await original.terminate() == 0


async def test_postgresql_ending_ferretdbs_connections_is_an_outage_not_a_refusal(
    infra: LocalSettings,
    stack: Stack,
    unique: Callable[[str], str],
    tmp_path: Path,
    cleanup: list[WorkerProcess],
) -> None:
    """PostgreSQL ends FerretDB's connections (a backend terminated, as a restart or an
    administrator does), and FerretDB answers InternalError for each command that was on
    one. The worker takes that as the outage it is: a read answers 5030 and a batch is
    retried. It used to take it as a refusal: 5000 to the reader (which the gateway counts
    against the worker) and the batch halved, its records judged one by one."""
    ports = {"LOCAL_MONGO_PORT": str(free_port())}
    with private_stack(tmp_path, infra.cache_dir, ["ferretdb"], ports) as private:
        own = private.settings.ferretdb_database
        env = FAST_TTL | {"RETRY_BACKOFF_MAX": "0.5"}
        worker = WorkerProcess.for_test(
            infra, unique, mongo_url=private.settings.mongo_url, env=env
        )
        cleanup.append(worker)
        mongo: Mongo = AsyncMongoClient(private.settings.mongo_url, timeoutMS=3000)
        messages = mongo[worker.mongo_db]["history"]

        async def end_connections() -> None:
            await asyncio.to_thread(
                stack.postgres.query,
                "postgres",
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                f" WHERE datname = '{own}' AND usename = '{ROLE}'",
            )

        answers: Counter[tuple[int, str | None]] = Counter()

        async def read_met_one() -> bool:
            await end_connections()
            async with aiohttp.ClientSession(headers=worker.headers) as http:
                url = f"{worker.base_url}/chats/{chats[0]}"
                async with http.get(url, params={"uid": "1"}) as resp:
                    answers[(resp.status, (await resp.json()).get("code"))] += 1
                    return resp.status != 200

        produced = 0

        async def write_met_one() -> bool:
            nonlocal produced
            await end_connections()
            await produce(infra.kafka_bootstrap, worker.topic, records_for(chats, 40))
            produced += 40
            return await worker.metric("dialogue_worker_retries_total") > 0

        try:
            await worker.start().wait_ready()
            chats = await new_chats(worker, 4)
            await eventually(read_met_one, what="a read that met an ended connection")
            assert set(answers) <= {(200, None), (503, "5030")}, answers

            await eventually(write_met_one, within=60, what="a write that met one")
            await eventually(lambda: _at_least(messages, produced), what=f"{produced} stored")
            assert await worker.metric("dialogue_worker_dlq_records_total") == 0
            log = worker.log_text()
            assert "batch write refused" not in log and "refused once" not in log
            assert await worker.terminate() == 0
            assert await worker.committed_everything()
            assert await messages.count_documents({}) == produced
        finally:
            worker.kill()
            await mongo.close()
