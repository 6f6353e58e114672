"""Benchmark: the worker's persisted records/s next to a plain aiokafka + pymongo baseline,
and the lag from produce to visible in GET /messages (p50/p99).

    .venv/bin/python -m bench.worker_bench [--records 30000] [--rounds 3] [--lag-samples 200]
                                           [--against REF]

Runs against the local services (python -m infra.local up). Both sides read the same
kind of pre-filled topic (same partitions, same payloads) into a fresh database; the
rate is measured from the first stored document to the last, so start-up is excluded.
Baseline and worker alternate for `--rounds` rounds (which goes first rotates too)
and the medians are compared: on a small shared machine one run of either side can be
off by a factor of two. `--against REF` adds a third side, the worker of another commit
(checked out in a temporary git worktree), to compare two versions of the worker in one
run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import resource
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from bench._common import StallWatch, delete_topics, forget_worker, number, percentile
from bench.soak.procfs import cpu_seconds
from contracts.ids import new_id
from contracts.records import MessageRecord
from infra.local import LocalSettings
from infra.processes.worker import REPO, WorkerProcess, produce

Mongo = AsyncMongoClient[dict[str, Any]]
Messages = AsyncCollection[dict[str, Any]]
PARTITIONS = 12
BATCH = 500
#: Seconds one produced record may take to show in GET /messages.
VISIBLE_WITHIN = 30.0


def payload(cids: list[str], n: int) -> list[tuple[bytes, bytes]]:
    out = []
    for i in range(n):
        record = MessageRecord(
            v=1,
            id=new_id(),
            cid=cids[i % len(cids)],
            uid=1,
            text=f"benchmark message {i}",
            createdAt=int(time.time()),
        )
        out.append((record.key(), record.to_bytes()))
    return out


Rate = tuple[float, float]  # records/s, CPU µs per record of the consuming process


async def rate_of(
    count: Callable[[], Awaitable[int]], total: int, cpu: Callable[[], float]
) -> Rate:
    """Records/s and CPU per record between the first stored document and the last."""
    first = started = cpu0 = 0.0
    watch = StallWatch("records stored", total)
    while True:
        done = await count()
        if done and not first:
            first, started, cpu0 = done, time.monotonic(), cpu()
        if done >= total:
            records = done - first
            if records <= 0:  # every record was stored before the first count saw any
                raise RuntimeError(
                    f"all {total} records were stored by the first count: nothing left to "
                    "time; raise --records"
                )
            return records / (time.monotonic() - started), 1e6 * (cpu() - cpu0) / records
        watch.check(done)
        await asyncio.sleep(0.05)  # polling /metrics costs the worker CPU too


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_of(pid: int) -> float:
    """CPU seconds of the worker process so far."""
    seconds = cpu_seconds(pid)
    if seconds is None:
        raise RuntimeError(f"the worker (pid {pid}) is gone")
    return seconds


async def baseline(infra: LocalSettings, mongo: Mongo, cids: list[str], n: int) -> Rate:
    """Plain aiokafka consumer + insert_many(ordered=False) per fetched batch, then commit."""
    name = f"bench-base-{uuid.uuid4().hex[:8]}"
    messages = mongo[name.replace("-", "_")]["messages"]
    try:
        await _create_topic(infra, name)
        await produce(infra.kafka_bootstrap, name, payload(cids, n))
        # A (cid, _id) index, as the worker's messages collection had before message
        # store v2: less storage work per record than the worker does now (docs/worker.md).
        await messages.create_index([("cid", ASCENDING), ("_id", DESCENDING)])
        return await _consume(infra, name, messages, n)
    finally:
        try:
            await mongo.drop_database(messages.database.name)
        finally:
            await delete_topics(infra.kafka_bootstrap, name)


async def _create_topic(infra: LocalSettings, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        await admin.close()


async def _consume(infra: LocalSettings, name: str, messages: Messages, n: int) -> Rate:
    """The baseline's consumer on topic `name`, timed until `n` records are inserted."""
    consumer = AIOKafkaConsumer(
        name,
        bootstrap_servers=infra.kafka_bootstrap,
        group_id=name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=BATCH,
    )
    await consumer.start()

    stored = 0

    async def consume() -> None:
        nonlocal stored
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            docs = []
            for records in batches.values():
                for r in records:
                    d = orjson.loads(r.value)
                    docs.append(
                        {
                            "_id": ObjectId(d["id"]),
                            "cid": ObjectId(d["cid"]),
                            "uid": d["uid"],
                            "text": d["text"],
                            "createdAt": d["createdAt"],
                        }
                    )
            if docs:
                await messages.insert_many(docs, ordered=False)
                await consumer.commit()
                stored += len(docs)

    async def inserted() -> int:
        return stored

    task = asyncio.create_task(consume())
    try:
        return await rate_of(inserted, n, own_cpu)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()


def bench_worker(source: Path = REPO) -> WorkerProcess:
    run = uuid.uuid4().hex[:8]
    infra = LocalSettings.from_env()
    return WorkerProcess.for_test(
        infra,
        lambda p: f"bench-{p}-{run}",
        partitions=PARTITIONS,
        env={"LOG_LEVEL": "WARNING"},
        source=source,
    )


async def create_chats(worker: WorkerProcess, n: int) -> list[str]:
    async with aiohttp.ClientSession(base_url=worker.base_url, headers=worker.headers) as http:
        cids = []
        for _ in range(n):
            async with http.post("/chats", json={"users": [1, 2]}) as resp:
                body = await resp.json()
                if resp.status != 201:
                    raise RuntimeError(f"POST /chats answered {resp.status}: {body}")
                cids.append(body["id"])
        return cids


async def worker_rate(infra: LocalSettings, n: int, source: Path = REPO) -> Rate:
    """The worker subprocess (of the tree at `source`) started on a pre-filled topic."""
    worker = bench_worker(source)
    try:
        await worker.start().wait_ready()
        cids = await create_chats(worker, 24)
        await worker.terminate()
        await produce(infra.kafka_bootstrap, worker.topic, payload(cids, n))
        pid = worker.start().pid
        assert pid is not None
        return await rate_of(lambda: persisted(worker), n, lambda: cpu_of(pid))
    finally:
        await worker.terminate()
        await forget_worker(infra, worker)


async def persisted(worker: WorkerProcess) -> int:
    """dialogue_worker_records_persisted_total from /metrics (0 until the server answers)."""
    try:
        return int(await worker.metric("dialogue_worker_records_persisted_total"))
    except aiohttp.ClientError:
        return 0


async def lag(infra: LocalSettings, samples: int) -> list[float]:
    """Seconds from producing one record to seeing it first in GET /messages (fresh worker)."""
    worker = bench_worker()
    try:
        await worker.start().wait_ready()
        (cid,) = await create_chats(worker, 1)
        return await _lags(infra, worker, cid, samples)
    finally:
        await worker.terminate()
        await forget_worker(infra, worker)


async def _lags(infra: LocalSettings, worker: WorkerProcess, cid: str, samples: int) -> list[float]:
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, acks="all")
    await producer.start()
    lags = []
    params = {"uid": "1", "cid": cid, "limit": "1"}
    try:
        async with aiohttp.ClientSession(base_url=worker.base_url, headers=worker.headers) as http:
            for i in range(samples):
                record = MessageRecord(
                    v=1, id=new_id(), cid=cid, uid=1, text=f"lag {i}", createdAt=int(time.time())
                )
                started = time.monotonic()
                await producer.send_and_wait(worker.topic, record.to_bytes(), key=record.key())
                while True:
                    async with http.get("/messages", params=params) as resp:
                        body = await resp.json()
                        if resp.status != 200:
                            raise RuntimeError(f"GET /messages answered {resp.status}: {body}")
                    if body["data"] and body["data"][0]["id"] == record.id:
                        break
                    if time.monotonic() - started > VISIBLE_WITHIN:
                        raise RuntimeError(
                            f"lag sample {i + 1} of {samples}: record {record.id} not visible "
                            f"after {VISIBLE_WITHIN:g} s (newest: {body['data'][:1]})"
                        )
                    await asyncio.sleep(0.002)
                lags.append(time.monotonic() - started)
    finally:
        await producer.stop()
    return lags


@contextlib.contextmanager
def checkout(ref: str | None) -> Iterator[Path | None]:
    """A temporary git worktree of `ref` (None: no second version)."""
    if ref is None:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    subprocess.run(["git", "worktree", "add", "--detach", str(folder), ref], cwd=REPO, check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=REPO, check=True)


async def main(records: int, rounds: int, samples: int, against: str | None) -> None:
    infra = LocalSettings.from_env()
    mongo: Mongo = AsyncMongoClient(infra.mongo_url)
    print(f"{records} records per run, {PARTITIONS} partitions, batch {BATCH}, {rounds} rounds")
    with checkout(against) as other:
        sides: dict[str, Callable[[], Awaitable[Rate]]] = {
            "baseline": lambda: baseline(infra, mongo, [new_id() for _ in range(24)], records),
            "worker": lambda: worker_rate(infra, records),
        }
        if other is not None:
            sides[f"worker@{against}"] = lambda: worker_rate(infra, records, other)
        rates: dict[str, list[Rate]] = {name: [] for name in sides}
        names = list(sides)
        try:
            for r in range(rounds):
                # The order rotates and every other round runs backwards, so no side
                # always follows the same one (its teardown: a database dropped, topics
                # deleted). Rotation alone put the reference worker right after the new
                # one in rounds 1 and 2, the runs the docs cite.
                turn = names[r // 2 % len(names) :] + names[: r // 2 % len(names)]
                for name in turn[::-1] if r % 2 else turn:
                    rates[name].append(await sides[name]())
                line = ", ".join(
                    f"{name} {rates[name][-1][0]:6.0f}/s ({rates[name][-1][1]:.0f} µs CPU/record)"
                    for name in names
                )
                ratio = rates["worker"][-1][0] / rates["baseline"][-1][0]
                print(f"round {r + 1}: {line}, worker/baseline {ratio:.2f}")
            lags = await lag(infra, samples)
        finally:
            await mongo.close()
    median = {name: statistics.median(v for v, _ in values) for name, values in rates.items()}
    cpu = {name: statistics.median(c for _, c in values) for name, values in rates.items()}
    for name in names:
        share = median[name] / median["baseline"]
        print(
            f"{name:<26}: {median[name]:8.0f} records/s (median, {share:.2f} of baseline), "
            f"{cpu[name]:.0f} µs CPU/record"
        )
    if other is not None:
        per_round = [
            w[0] / o[0] for w, o in zip(rates["worker"], rates[f"worker@{against}"], strict=True)
        ]
        print(
            f"worker / worker@{against}: {median['worker'] / median[f'worker@{against}']:.2f} "
            f"(medians); per round {' '.join(f'{x:.2f}' for x in per_round)}"
        )
    print(
        f"produce -> visible lag    : p50 {percentile(lags, 0.5) * 1e3:.0f} ms, "
        f"p99 {percentile(lags, 0.99) * 1e3:.0f} ms ({len(lags)} samples)"
    )


def revision(raw: str) -> str:
    """An argparse `type` for --against: a revision git resolves to a commit of this
    repository. A bad one used to end the run in a traceback from `git worktree add`."""
    problem = f"{raw!r} is not a commit of {REPO}"
    if not raw or raw.startswith("-"):  # git would read it as an option
        raise argparse.ArgumentTypeError(problem)
    try:
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{raw}^{{commit}}"],
            cwd=REPO,
            capture_output=True,
            check=False,
        )
    except OSError as exc:  # no git on the PATH
        raise argparse.ArgumentTypeError(f"cannot run git to look up {raw!r}: {exc}") from None
    if found.returncode:
        raise argparse.ArgumentTypeError(problem)
    return raw


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; refused (exit 2, with the reason) before anything starts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=number(int, 1), default=30_000)
    parser.add_argument("--rounds", type=number(int, 1), default=3)
    parser.add_argument("--lag-samples", type=number(int, 1), default=200)
    parser.add_argument(
        "--against", type=revision, help="also run the worker of this git commit or branch"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    # A topic is produced to right after it is created; metadata warnings are expected.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    asyncio.run(main(args.records, args.rounds, args.lag_samples, args.against))
