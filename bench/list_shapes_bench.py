"""Benchmark: what one user's chat list costs to read on FerretDB, stored four ways.

    .venv/bin/python -m bench.list_shapes_bench [--chats 200] [--page 50] [--samples 300]

The chat list (`GET /v1/chats`) of a user in `--chats` chats reads every chat of the user
(a `users` equality, served by its GIN twin) and ranks them in the worker. Its p99 at the
worker stays above 20 ms on the local default (docs/decisions.md, "Measured"). This
times, straight at the local FerretDB (python -m infra.local up), in a scratch database
it drops again, what the alternatives would read, p50 / p99 over `--samples` sequential
calls:

- today's read: the user's chat documents (shaped like the worker's, two members, a
  60-character preview) by `{"users": uid}`;
- a per-user list document holding, per chat, what ranks it (opened, last activity,
  last seq, read marker): one `_id` look-up; then the page's `--page` chats by `_id`, 16
  look-ups at a time (what a list ranked from it would still have to read);
- a per-user list document holding everything the API shows of each chat (members,
  preview, counts), so that no chat is read; and one `$max` update of one of its
  entries, what a message would cost each member's list when written.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient

from bench._common import number, percentile
from infra.local import LocalSettings

UID = 1
PARALLEL = 16  # look-ups at a time, as the worker sends them
PREVIEW = "benchmark message " * 3


def chat_doc(cid: ObjectId, other: int, n: int) -> dict[str, Any]:
    return {
        "_id": cid,
        "users": [UID, other],
        "createdAt": 1_700_000_000,
        "openedAt": 1_700_000_000.5,
        "lastSeq": 10,
        "lastPart": 3,
        "lastOffset": 12_345,
        "lastAt": 1_700_000_100.0 + n,
        "lastMessage": _preview(n),
        "v": 1,
    }


def _preview(n: int) -> dict[str, Any]:
    return {"id": str(ObjectId()), "seq": 10, "uid": UID, "text": PREVIEW, "createdAt": n}


async def timed(samples: int, call: Callable[[], Awaitable[Any]]) -> str:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1e3)
    return f"p50 {percentile(times, 0.5):6.1f} ms   p99 {percentile(times, 0.99):6.1f} ms"


async def run(chats: int, page: int, samples: int) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(LocalSettings.from_env().mongo_url)
    name = f"list_shapes_{uuid.uuid4().hex[:8]}"
    db = client[name]
    try:
        for collection in ("chats", "slim", "full"):
            await db.create_collection(collection)
        await db.chats.create_index("users")
        ids = [ObjectId() for _ in range(chats)]
        await db.chats.insert_many([chat_doc(cid, 1000 + n, n) for n, cid in enumerate(ids)])
        slim = {
            str(cid): {"o": 1_700_000_000.5, "a": 1_700_000_100.0 + n, "s": 10, "r": 5}
            for n, cid in enumerate(ids)
        }
        full = {
            str(cid): {"o": 1_700_000_000.5, "ca": 1, "r": 5, "u": [UID, 1000 + n]}
            | {"l": {"s": 10, "a": 1_700_000_100.0 + n} | _preview(n)}
            for n, cid in enumerate(ids)
        }
        await db.slim.insert_one({"_id": UID, "c": slim, "v": 1})
        await db.full.insert_one({"_id": UID, "c": full, "v": 1})
        gate = asyncio.Semaphore(PARALLEL)

        async def by_key(cid: ObjectId) -> Any:
            async with gate:
                return await db.chats.find_one({"_id": cid})

        async def page_by_key() -> None:
            await asyncio.gather(*(by_key(cid) for cid in ids[:page]))

        bumps = iter(range(11, 10**9))

        async def one_entry() -> None:
            entry = {"s": next(bumps), "a": time.time()} | _preview(0)
            await db.full.update_one(
                {"_id": UID}, {"$max": {f"c.{ids[0]}.l": entry}, "$inc": {"v": 1}}
            )

        print(
            f"chat list shapes on FerretDB: a user in {chats:,} chats, a page of {page}, "
            f"{samples} samples each"
        )

        async def today() -> None:
            await db.chats.find({"users": UID}).to_list()

        rows: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("the user's chats by `users` (today)", today),
            ("list document, ranking fields only", lambda: db.slim.find_one({"_id": UID})),
            (f"the page's {page} chats by `_id`", page_by_key),
            ("list document, every field shown", lambda: db.full.find_one({"_id": UID})),
            ("one entry of that document, $max", one_entry),
        ]
        for label, call in rows:
            print(f"  {label:38s} {await timed(samples, call)}")
    finally:
        await client.drop_database(name)
        await client.close()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=number(int, 1), default=200)
    parser.add_argument("--page", type=number(int, 1), default=50)
    parser.add_argument("--samples", type=number(int, 1), default=300)
    args = parser.parse_args(argv)
    if args.page > args.chats:
        parser.error(f"--page {args.page} is more than the user's {args.chats} chats")
    return args


if __name__ == "__main__":
    a = parse_args()
    asyncio.run(run(a.chats, a.page, a.samples))
