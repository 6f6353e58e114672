"""Benchmark: read latency of the message store at 10k, 100k and 1M messages, and the write rate.

    .venv/bin/python -m bench.store_bench [--sizes 10000,100000,1000000] [--samples 200]
                                          [--members 2] [--chat-lists-max 500000]

Runs one worker against the local services (python -m infra.local up) on a fresh
database, then grows the store in stages through the worker itself (records produced to
its topic): one hot chat holds 10 % of the messages, the rest spread over 999 small
chats, 200 of which have user 1 as a member (with one other user each, or `--members`
minus one). After each stage it times, at the worker's internal API (no gateway in
between), p50 and p99 over `--samples` calls of: the newest page of the hot chat, a page
50,000 messages deep in it (or half its size, when smaller), the newest page of a small
chat, the chat list of a user in 200 chats, a read-marker move, and the chat list right
after each such move (the move untimed: the list the worker keeps has one marker to read
again); then, after a message in each of the user's 200 chats, the second page of a
listing begun before them (every chat ranked where it stood then; a tenth of the
samples). It prints the rate at which the worker stored each stage's messages.

The worker keeps chat lists (`CHAT_LISTS_MAX`, docs/decisions.md "The chat list, kept"):
the repeated list of an unchanged user costs what nothing changed costs.
`--chat-lists-max 0` runs the worker without them, so every list reads the user's chats
and markers whole, as before they were kept.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from bench._common import StallWatch, counts, forget_worker, number, percentile
from contracts.ids import new_id
from contracts.records import MessageRecord
from contracts.requests import MAX_USERS
from infra.local import LocalSettings
from infra.processes.worker import WorkerProcess, produce

SMALL_CHATS = 999
LISTED = 200  # small chats user 1 belongs to
HOT_SHARE = 0.10
DEEP = 50_000
PAGE = 50
CHUNK = 20_000  # records produced at a time


def record(cid: str, uid: int) -> tuple[bytes, bytes]:
    r = MessageRecord(
        v=1,
        id=new_id(),
        cid=cid,
        uid=uid,
        text="benchmark message " * 3,
        createdAt=int(time.time()),
    )
    return r.key(), r.to_bytes()


async def timed(
    samples: int,
    call: Callable[[int], Awaitable[Any]],
    before: Callable[[int], Awaitable[Any]] | None = None,
) -> tuple[float, float]:
    """p50, p99 in milliseconds of `samples` sequential calls (each after `before`, untimed)."""
    times = []
    for i in range(samples):
        if before is not None:
            await before(i)
        started = time.perf_counter()
        await call(i)
        times.append((time.perf_counter() - started) * 1e3)
    return percentile(times, 0.5), percentile(times, 0.99)


def members(listed: int, size: int) -> list[int]:
    """The members of user 1's `listed`-th chat: user 1 and `size - 1` others, whom no
    other chat of the bench has (user 2 is the hot chat's; 3.. the small chats')."""
    first = 3 + SMALL_CHATS + listed * (size - 1)
    return [1, *range(first, first + size - 1)]


class Bench:
    def __init__(self, worker: WorkerProcess, http: aiohttp.ClientSession, size: int) -> None:
        self.worker = worker
        self.http = http
        self.size = size  # members of each of user 1's small chats
        self.hot = ""
        self.small: list[str] = []
        self.stored = 0  # messages produced so far
        self.hot_size = 0
        self.small_size = 0
        self.marked = 0  # where user 1's read markers stand in the listed chats

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with self.http.request(method, f"{self.worker.base_url}{path}", **kwargs) as resp:
            body = await resp.json()
            assert resp.status < 300, body
            return body

    async def setup(self) -> None:
        self.hot = (await self.call("POST", "/chats", json={"users": [1, 2]}))["id"]
        for i in range(SMALL_CHATS):
            users = members(i, self.size) if i < LISTED else [2, 3 + i]
            self.small.append((await self.call("POST", "/chats", json={"users": users}))["id"])

    async def grow_to(self, total: int, bootstrap: str) -> float:
        """Produce until `total` messages are stored; the worker's rate for this stage."""
        wanted = total - self.stored
        hot = round(wanted * HOT_SHARE)
        plan = [self.hot] * hot + [self.small[i % SMALL_CHATS] for i in range(wanted - hot)]
        author = {cid: 1 if i < LISTED else 2 for i, cid in enumerate(self.small)} | {self.hot: 1}
        first = await self.persisted()
        started = time.monotonic()
        for start in range(0, len(plan), CHUNK):
            chunk = plan[start : start + CHUNK]
            await produce(bootstrap, self.worker.topic, [record(c, author[c]) for c in chunk])
        await self.persisted_reaches(first + wanted)
        rate = wanted / (time.monotonic() - started)
        self.stored = total
        self.hot_size += hot
        self.small_size = (self.stored - self.hot_size) // SMALL_CHATS
        return rate

    async def persisted(self) -> int:
        return int(await self.worker.metric("dialogue_worker_records_persisted_total"))

    async def persisted_reaches(self, count: int) -> None:
        """Wait until the worker has persisted `count` records (Stalled when it stops)."""
        watch = StallWatch("records persisted", count)
        while (done := await self.persisted()) < count:
            watch.check(done)
            await asyncio.sleep(0.5)

    async def list_after_moves(self, samples: int, bootstrap: str) -> tuple[float, float]:
        """The chat list's second page after each of user 1's chats got a message since
        its first page: every chat is ranked where it stood when the listing began."""
        first = await self.call("GET", "/chats", params={"uid": "1", "limit": "50"})
        before = await self.persisted()
        moved = [record(cid, 1) for cid in self.small[:LISTED]]
        await produce(bootstrap, self.worker.topic, moved)
        await self.persisted_reaches(before + LISTED)
        self.stored += LISTED
        params = {"uid": "1", "limit": "50", "cursor": first["nextCursor"]}
        return await timed(samples, lambda i: self.call("GET", "/chats", params=params))

    async def mark_listed(self, seq: int) -> None:
        """User 1's read marker at `seq` in each listed chat (untimed)."""
        for cid in self.small[:LISTED]:
            await self.call("PUT", f"/chats/{cid}/read", params={"uid": "1"}, json={"seq": seq})

    async def measure(self, samples: int) -> dict[str, tuple[float, float]]:
        # Every listed chat has a marker before anything is timed: the chat list reads
        # them (at the first size it read none), and a move updates one, as at later sizes.
        if not self.marked:
            self.marked = 1
            await self.mark_listed(self.marked)
        moves = -(-samples // LISTED)  # each call moves its chat's marker forward by one
        depth = min(DEEP, self.hot_size // 2)
        deep_seq = self.hot_size - depth
        results = {
            "newest page, hot chat": await timed(
                samples,
                lambda i: self.call(
                    "GET", "/messages", params={"uid": "1", "cid": self.hot, "limit": str(PAGE)}
                ),
            ),
            f"page {depth:,} deep, hot chat": await timed(
                samples,
                lambda i: self.call(
                    "GET",
                    "/messages",
                    params={
                        "uid": "1",
                        "cid": self.hot,
                        "limit": str(PAGE),
                        "beforeSeq": str(deep_seq),
                    },
                ),
            ),
            "newest page, small chat": await timed(
                samples,
                lambda i: self.call(
                    "GET",
                    "/messages",
                    params={"uid": "1", "cid": self.small[i % LISTED], "limit": str(PAGE)},
                ),
            ),
            f"chat list, user in {LISTED} chats": await timed(
                samples, lambda i: self.call("GET", "/chats", params={"uid": "1", "limit": "50"})
            ),
            "read-marker move": await timed(
                samples,
                lambda i: self.call(
                    "PUT",
                    f"/chats/{self.small[i % LISTED]}/read",
                    params={"uid": "1"},
                    json={"seq": self.marked + 1 + i // LISTED},
                ),
            ),
        }
        self.marked += moves
        results["chat list after a marker move"] = await self.list_after_a_move(samples)
        return results

    async def list_after_a_move(self, samples: int) -> tuple[float, float]:
        """The chat list, each time right after one of its markers moved (untimed; a move
        clamped to the chat's newest seq publishes its event all the same)."""

        def move(i: int) -> Awaitable[Any]:
            cid, seq = self.small[i % LISTED], {"seq": self.marked}
            return self.call("PUT", f"/chats/{cid}/read", params={"uid": "1"}, json=seq)

        return await timed(
            samples,
            lambda i: self.call("GET", "/chats", params={"uid": "1", "limit": "50"}),
            before=move,
        )


async def main(sizes: list[int], samples: int, chat_size: int, lists_max: int) -> None:
    infra = LocalSettings.from_env()
    run = uuid.uuid4().hex[:8]
    env = {"LOG_LEVEL": "WARNING", "CHAT_LISTS_MAX": str(lists_max)}
    worker = WorkerProcess.for_test(
        infra, lambda p: f"store-bench-{p}-{run}", partitions=12, env=env
    )
    print(
        f"store benchmark: 1 hot chat ({HOT_SHARE:.0%}), {SMALL_CHATS} small chats, "
        f"{samples} samples per read, page {PAGE}; user 1's chats have {chat_size} members; "
        f"CHAT_LISTS_MAX={lists_max}"
    )
    try:
        await worker.start().wait_ready(120)
        async with aiohttp.ClientSession(headers=worker.headers) as http:
            bench = Bench(worker, http, chat_size)
            await bench.setup()
            for size in sizes:
                rate = await bench.grow_to(size, infra.kafka_bootstrap)
                print(
                    f"\n{size:,} messages (hot chat {bench.hot_size:,}, small chats "
                    f"~{bench.small_size:,} each): stored at {rate:,.0f} messages/s"
                )
                results = await bench.measure(samples)
                moved_samples = max(10, samples // 10)
                results[f"chat list, page 2, {LISTED} chats moved"] = await bench.list_after_moves(
                    moved_samples, infra.kafka_bootstrap
                )
                for name, (p50, p99) in results.items():
                    print(f"  {name:<34} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
                print(f"  (the last line: {moved_samples} samples)")
    finally:
        await worker.terminate()
        await forget_worker(infra, worker)


def sizes(raw: str) -> list[int]:
    """An argparse `type`: store sizes in the order the store grows to them, each larger
    than the one before (the store only grows)."""
    found = counts(raw)
    if any(b <= a for a, b in itertools.pairwise(found)):
        raise argparse.ArgumentTypeError(f"{raw!r}: each size must be larger than the one before")
    return found


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=sizes, default=sizes("10000,100000,1000000"))
    parser.add_argument("--samples", type=number(int, 1), default=200)
    parser.add_argument(
        "--members",
        type=number(int, 2),
        default=2,
        help=f"members of each of user 1's chats, at most {MAX_USERS} (the list reads them all)",
    )
    parser.add_argument(
        "--chat-lists-max",
        type=number(int, 0),
        default=500_000,
        help="the worker's CHAT_LISTS_MAX (0: every list read whole)",
    )
    args = parser.parse_args(argv)
    if args.chat_lists_max > 2**31 - 1:  # what the worker's settings take
        parser.error(f"argument --chat-lists-max: must be <= {2**31 - 1}")
    if args.members > MAX_USERS:  # what one POST /chats may name
        parser.error(f"argument --members: must be <= {MAX_USERS}, got {args.members}")
    return args


if __name__ == "__main__":
    args = parse_args()
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    asyncio.run(main(args.sizes, args.samples, args.members, args.chat_lists_max))
