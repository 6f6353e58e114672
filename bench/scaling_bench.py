"""Benchmark: persisted records/s of 1, 2 and 3 workers of one consumer group on a
12-partition topic, in one run, and the bytes a record takes on the topic. Prints its
figures; asserts nothing.

    .venv/bin/python -m bench.scaling_bench [--records 60000] [--workers 1,2,3] [--rounds 1]
                                            [--chats-per-worker 24] [--text-chars 64]

Needs the local infrastructure running (`python -m infra.local up`); the workers register
in a private Consul agent, as in gateway_bench. Each step (one worker count) gets its own
consumer group, topics and database, so every step starts from the same state:

1. k workers start on the fresh, still empty 12-partition topic; the step waits until
   each is ready and Kafka reports the group Stable with k members, so no rebalance
   happens while records are counted.
2. Chats are created through a worker, `--chats-per-worker` x k of them, the same number
   in every partition: a batch costs one chat-state update per chat it touches, so each
   worker gets the same number of chats at every step and does the same work per record.
3. `--records` records are produced (acks=all), the same number to every partition.
   The workers start on them at once; the window is opened when production has ended
   (the producer no longer competes for the cores) and closed when 90 % of what was left
   is persisted (the last records come from fewer partitions, so not all workers are
   busy to the end). The window must hold 100 records per partition, so `--records`
   is at least 1,334 (90 % of it is 1,200), more when the workers persist much of it
   while it is produced. Progress is the sum of the workers'
   `dialogue_worker_records_persisted_total`; the step still waits for every record.

`--rounds` repeats the counts (which goes first rotates) and reports medians: on a small
shared machine one step can be off by a factor of two. Per step it also prints CPU µs
per record of the workers, of the store (FerretDB and its PostgreSQL) and of Kafka (from
/proc and the local stack's pid files), and the cores busy in the window: ours
(those processes and this one) and others' (the rest of the machine). The workers, the
store and Kafka share the machine's cores, so read the efficiency next to them. At the
end: bytes per record produced (key + value + headers) and on disk (the topics' log
segments under LOCAL_RUN_DIR, one replica), for the message topic and for the events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from bench._common import StallWatch, forget_worker, number
from bench._common import counts as count_list
from bench.soak.procfs import cpu_seconds
from contracts.ids import new_id
from contracts.records import MessageRecord
from infra.local import LocalSettings
from infra.local.stack import Stack
from infra.processes.private import private_consul
from infra.processes.worker import WorkerProcess, metric_sum, produce

PARTITIONS = 12
PERSISTED = "dialogue_worker_records_persisted_total"
BATCHES = "dialogue_worker_batch_seconds_count"
DEAD_LETTERS = "dialogue_worker_dlq_records_total"
WINDOW_SHARE = 0.9
#: Records the timed window must hold: 100 per partition, else the rate is noise.
MIN_WINDOW = PARTITIONS * 100
#: The fewest --records whose window can hold MIN_WINDOW: the window is WINDOW_SHARE of
#: what is left once production ends, at most all of them (none persisted by then).
MIN_RECORDS = math.ceil(MIN_WINDOW / WINDOW_SHARE)
POLL = 0.1  # seconds between two reads of the workers' /metrics
CHAT_CONCURRENCY = 8
CPU_NAMES = ("workers", "store", "kafka")


@dataclass
class Step:
    workers: int
    rate: float  # records/s persisted by all workers in the window
    window: int  # records persisted in the window
    backlog: int  # records not yet persisted when the window opened
    produce_seconds: float
    shares: list[int]  # records each worker persisted in the window
    batch: float  # records per written batch, from the window's start to the last record
    cpu: dict[str, float]  # CPU µs per record by component
    cores: tuple[float, float]  # cores busy in the window: this benchmark's processes, others
    dead_letters: int


@dataclass
class TopicBytes:
    records: int
    produced: int  # key + value + headers of the produced records
    on_disk: int | None  # log segments, one replica
    events: int
    events_on_disk: int | None


def store_processes(postmaster: set[int], database: str) -> set[int]:
    """PostgreSQL's processes, less the backends of other databases (private FerretDBs)."""
    found = set(postmaster)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            title = (stat.parent / "cmdline").read_text().replace("\0", " ").split()
        except (OSError, IndexError, ValueError):
            continue
        # A backend's title: "postgres: <cluster>: <user> <database> <client> <state>".
        backend = len(title) >= 5 and (title[4].endswith(")") or title[4] == "[local]")
        if ppid in postmaster and not (backend and title[3] != database):
            found.add(int(stat.parent.name))
    return found


def cpu_of(pids: Iterable[int]) -> float:
    """User + system CPU seconds of the processes (0 for one that is gone)."""
    return sum(cpu_seconds(pid) or 0.0 for pid in pids)


def component_cpu(stack: Stack, workers: Iterable[WorkerProcess]) -> dict[str, float]:
    """CPU seconds so far of the workers, the store and Kafka (those found)."""
    running = {name: stack.process(name).pid() for name in stack.services}
    pids = {name: pid for name, pid in running.items() if pid is not None}
    postmaster = {pid for name, pid in pids.items() if name == "postgres"}
    groups = {
        "workers": {w.pid for w in workers if w.pid is not None},
        "store": {pid for name, pid in pids.items() if name == "ferretdb"}
        | store_processes(postmaster, stack.settings.ferretdb_database),
        "kafka": {pid for name, pid in pids.items() if name.startswith("kafka")},
    }
    seconds = {name: cpu_of(found) for name, found in groups.items() if found}
    return seconds | {"bench": cpu_of([os.getpid()]), "machine": machine_busy()}


def machine_busy() -> float:
    """CPU seconds all cores spent busy since boot (not idle, not waiting for I/O)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    busy = sum(values[:8]) - values[3] - values[4]  # guest time is already in user
    return busy / os.sysconf("SC_CLK_TCK")


def log_dirs(root: Path, depth: int = 3) -> list[Path]:
    """Kafka's log dirs under root: folders holding meta.properties (not entered)."""
    if (root / "meta.properties").exists():
        return [root]
    found: list[Path] = []
    if depth > 0:
        with contextlib.suppress(OSError):  # a topic being deleted vanishes under us
            for entry in os.scandir(root):
                if entry.is_dir():
                    found += log_dirs(Path(entry.path), depth - 1)
    return found


def segment_bytes(run_dir: Path, topic: str) -> int | None:
    """Bytes in the topic's log segments under run_dir, one replica (None: not found)."""
    name = re.compile(rf"{re.escape(topic)}-(\d+)")
    per_partition: dict[str, int] = {}
    for log_dir in [d for root in run_dir.glob("kafka*") for d in log_dirs(root)]:
        for folder in log_dir.glob(f"{topic}-*"):
            match = name.fullmatch(folder.name)
            if match:  # replicas of a partition hold the same records: count one
                size = sum(f.stat().st_size for f in folder.glob("*.log"))
                per_partition[match[1]] = max(size, per_partition.get(match[1], 0))
    return sum(per_partition.values()) if per_partition else None


async def end_offsets(bootstrap: str, topic: str) -> int:
    """Records ever written to the topic: the sum of its partitions' end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


async def group_stable(admin: AIOKafkaAdminClient, group: str, members: int) -> None:
    """Wait until Kafka reports the consumer group Stable with `members` members."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        (response,) = await admin.describe_consumer_groups([group])
        (state,) = response.to_object()["groups"]
        if state["state"] == "Stable" and len(state["members"]) == members:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"group {group} not Stable with {members} members after 120 s")


async def balanced_chats(worker: WorkerProcess, per_partition: int) -> list[list[str]]:
    """Create chats until every partition has `per_partition`; the chat ids by partition."""
    ids = list(range(PARTITIONS))
    place = DefaultPartitioner()  # how Kafka's clients place a keyed record: murmur2
    by_partition: list[list[str]] = [[] for _ in ids]
    async with aiohttp.ClientSession(base_url=worker.base_url, headers=worker.headers) as http:

        async def create() -> str:
            async with http.post("/chats", json={"users": [1, 2]}) as resp:
                body: dict[str, Any] = await resp.json()
                if resp.status >= 300:
                    raise RuntimeError(f"POST /chats answered {resp.status}: {body}")
                return str(body["id"])

        while any(len(cids) < per_partition for cids in by_partition):
            for cid in await asyncio.gather(*(create() for _ in range(CHAT_CONCURRENCY))):
                cids = by_partition[place(cid.encode(), ids, ids)]
                if len(cids) < per_partition:
                    cids.append(cid)
    return by_partition


Plan = list[tuple[bytes | None, bytes]]  # (key, value) of each record to produce


def records(by_partition: list[list[str]], n: int, text_chars: int) -> Plan:
    """n records, the same number to every partition, round robin over its chats."""
    text = ("benchmark message " * (text_chars // 18 + 1))[:text_chars]
    out: Plan = []
    for i in range(n):
        cids = by_partition[i % PARTITIONS]
        record = MessageRecord(
            v=1,
            id=new_id(),
            cid=cids[(i // PARTITIONS) % len(cids)],
            uid=1,
            text=text,
            createdAt=int(time.time()),
        )
        out.append((record.key(), record.to_bytes()))
    return out


async def persisted(
    http: aiohttp.ClientSession, workers: list[WorkerProcess], name: str = PERSISTED
) -> list[int]:
    """Each worker's dialogue_worker_records_persisted_total (or another counter)."""

    async def one(worker: WorkerProcess) -> int:
        async with http.get(f"{worker.base_url}/metrics", headers=worker.headers) as resp:
            return int(metric_sum(await resp.text(), name))

    return list(await asyncio.gather(*(one(w) for w in workers)))


async def run_step(
    infra: LocalSettings, consul_url: str, name: str, k: int, args: argparse.Namespace
) -> tuple[Step, TopicBytes]:
    """One worker count on its own group, topics and database (names start with `name`)."""
    first = WorkerProcess.for_test(
        infra,
        lambda p: f"{name}-{p}",
        consul_url=consul_url,
        partitions=PARTITIONS,
        env={"LOG_LEVEL": "WARNING"},
    )
    workers = [first] + [first.sibling(f"{first.service_id}-{i}") for i in range(2, k + 1)]
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap)
    await admin.start()
    try:
        for worker in workers:
            worker.start()
        await asyncio.gather(*(w.wait_ready(180) for w in workers))
        await group_stable(admin, first.app_id, k)
        per_partition = args.chats_per_worker * k // PARTITIONS
        plan = records(await balanced_chats(first, per_partition), args.records, args.text_chars)
        async with aiohttp.ClientSession() as http:
            step = await measure(Stack(infra), http, workers, plan)
        sizes = TopicBytes(
            records=await end_offsets(infra.kafka_bootstrap, first.topic),
            produced=sum(len(key or b"") + len(value) for key, value in plan),
            on_disk=segment_bytes(infra.run_dir, first.topic),
            events=await end_offsets(infra.kafka_bootstrap, first.events_topic),
            events_on_disk=segment_bytes(infra.run_dir, first.events_topic),
        )
        return step, sizes
    finally:
        await asyncio.gather(*(w.terminate() for w in workers), return_exceptions=True)
        await admin.close()
        await forget_worker(infra, first)


async def measure(
    stack: Stack,
    http: aiohttp.ClientSession,
    workers: list[WorkerProcess],
    plan: Plan,
) -> Step:
    """Produce the plan, then time the workers from the end of production to 90 %."""
    n = len(plan)
    started = time.monotonic()
    await produce(stack.settings.kafka_bootstrap, workers[0].topic, plan)
    t0 = time.monotonic()
    produce_seconds = t0 - started
    p0, cpu0 = await persisted(http, workers), component_cpu(stack, workers)
    b0 = sum(await persisted(http, workers, BATCHES))
    target = sum(p0) + WINDOW_SHARE * (n - sum(p0))
    closed: tuple[list[int], float, dict[str, float]] | None = None
    watch = StallWatch("records persisted", n)
    while True:
        await asyncio.sleep(POLL)
        now = await persisted(http, workers)
        if closed is None and sum(now) >= target:
            closed = now, time.monotonic(), component_cpu(stack, workers)
        if sum(now) >= n:
            break
        watch.check(sum(now))
    assert closed is not None
    p1, t1, cpu1 = closed
    window = sum(p1) - sum(p0)
    batches = sum(await persisted(http, workers, BATCHES)) - b0  # window start to the end
    if window < MIN_WINDOW:  # the workers persisted much of it while it was produced
        raise RuntimeError(
            f"only {window} records in the window (fewer than {MIN_WINDOW}): raise --records"
        )
    used = {name: cpu1[name] - cpu0[name] for name in cpu0}
    ours = sum(v for name, v in used.items() if name != "machine")
    return Step(
        workers=len(workers),
        rate=window / (t1 - t0),
        window=window,
        backlog=n - sum(p0),
        produce_seconds=produce_seconds,
        shares=[b - a for a, b in zip(p0, p1, strict=True)],
        batch=(n - sum(p0)) / max(1, batches),
        cpu={name: 1e6 * used[name] / window for name in CPU_NAMES if name in used},
        cores=(ours / (t1 - t0), (used["machine"] - ours) / (t1 - t0)),
        dead_letters=sum([int(await w.metric(DEAD_LETTERS)) for w in workers]),
    )


def step_line(s: Step) -> str:
    cpu = ", ".join(f"{s.cpu[name]:.0f}" if name in s.cpu else "-" for name in CPU_NAMES)
    shares = " / ".join(f"{x:,}" for x in s.shares)
    return (
        f"{s.workers} worker(s): {s.rate:6,.0f} records/s over {s.window:,} records "
        f"(backlog {s.backlog:,} at the window's start; "
        f"window shares {shares}, {s.batch:.0f} per batch); CPU µs/record {cpu}; "
        f"cores ours {s.cores[0]:.2f}, "
        f"others {s.cores[1]:.2f}; produced in {s.produce_seconds:.1f} s; "
        f"dead letters {s.dead_letters}"
    )


def report(steps: list[Step], sizes: TopicBytes) -> None:
    counts = sorted({s.workers for s in steps})
    by_count = {k: [s for s in steps if s.workers == k] for k in counts}
    rate = {k: statistics.median(s.rate for s in runs) for k, runs in by_count.items()}
    base = rate[counts[0]] / counts[0]
    print(
        f"\n{'workers':>7} {'records/s':>10} {'per worker':>10} {'efficiency':>10}   "
        f"{'range':>13} {'batch':>5}   CPU µs/record: workers, store, kafka   cores: ours, others"
    )
    for k, runs in by_count.items():
        cpu = ", ".join(
            f"{statistics.median(s.cpu[name] for s in runs):.0f}" if name in runs[0].cpu else "-"
            for name in CPU_NAMES
        )
        ours = statistics.median(s.cores[0] for s in runs)
        others = statistics.median(s.cores[1] for s in runs)
        spread = f"{min(s.rate for s in runs):,.0f}-{max(s.rate for s in runs):,.0f}"
        print(
            f"{k:>7} {rate[k]:>10,.0f} {rate[k] / k:>10,.0f} {rate[k] / k / base:>10.2f}   "
            f"{spread:>13} {statistics.median(s.batch for s in runs):>5.0f}   "
            f"{cpu:<35} {ours:.2f}, {others:.2f}"
        )
    if len(steps) > len(counts):
        print("(medians over the rounds; range: slowest and fastest round)")
    print(
        f"\nbytes per record produced (key + value + headers, headers none): "
        f"{sizes.produced / sizes.records:.0f} ({sizes.records:,} records on the topic)"
    )
    if sizes.on_disk is None:
        print("on disk: no log segments of the topic under LOCAL_RUN_DIR (Kafka runs elsewhere)")
        return
    print(f"on disk, one replica, message topic: {sizes.on_disk / sizes.records:.0f} bytes/record")
    if sizes.events_on_disk is not None and sizes.events:
        print(
            f"on disk, one replica, events topic: {sizes.events_on_disk / sizes.events:.0f} "
            f"bytes/event ({sizes.events:,} events: message.created and chat.created)"
        )


async def main(args: argparse.Namespace) -> None:
    infra = LocalSettings.from_env()
    run = uuid.uuid4().hex[:8]
    counts: list[int] = args.workers
    if any(PARTITIONS % k or args.chats_per_worker * k % PARTITIONS for k in counts):
        raise SystemExit(
            f"each worker count must divide {PARTITIONS}, and --chats-per-worker x count "
            f"be a multiple of {PARTITIONS}"
        )
    print(
        f"scaling: {args.records:,} records per step, {PARTITIONS} partitions, "
        f"{args.chats_per_worker} chats per worker, text {args.text_chars} chars, "
        f"{args.rounds} round(s); "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"
    )
    steps = []
    sizes = None
    with (
        tempfile.TemporaryDirectory(prefix="scaling-bench-") as tmp,
        private_consul(Path(tmp), infra.cache_dir) as c,
    ):
        for r in range(args.rounds):
            # Which count goes first rotates, so none always follows the same neighbour.
            for k in counts[r % len(counts) :] + counts[: r % len(counts)]:
                name = f"scaling-{run}-r{r + 1}-w{k}"
                step, sizes = await run_step(infra, c.settings.consul_url, name, k, args)
                steps.append(step)
                print(f"round {r + 1}: {step_line(step)}", flush=True)
    assert sizes is not None
    report(steps, sizes)


#: An argparse `type` for --records: at least MIN_RECORDS. Fewer used to run every step
#: and fail at the end of the first, when its window was found too small.
record_count = number(
    int,
    MIN_RECORDS,
    why=f"the timed window, at most {WINDOW_SHARE * 100:g} % of the records, must hold "
    f"{MIN_WINDOW} ({MIN_WINDOW // PARTITIONS} per partition)",
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; refused (exit 2, with the reason) when a step could not be timed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--records", type=record_count, default=60_000, help=f"records per step, >= {MIN_RECORDS}"
    )
    parser.add_argument(
        "--workers",
        type=count_list,
        default=count_list("1,2,3"),
        help="worker counts, one step each",
    )
    parser.add_argument("--chats-per-worker", type=number(int, 1), default=24)
    parser.add_argument("--rounds", type=number(int, 1), default=1, help="times every count is run")
    parser.add_argument(
        "--text-chars", type=number(int, 1), default=64, help="characters of message text"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    # Topics are created and deleted around every step: aiokafka's metadata warnings are noise.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    asyncio.run(main(parse_args()))
