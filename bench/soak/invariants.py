"""The end-of-run checks: every acknowledged message stored exactly once (read straight
from MongoDB), and every live client got every message of its chats (by seq)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from pymongo import AsyncMongoClient

from bench.soak.plan import Plan
from bench.soak.sampler import KafkaLag
from platform_common.gather import bounded

#: Seconds the workers get to consume what the load left in the topic.
CATCH_UP_WITHIN = 180.0
#: Seconds, after that, for every acknowledged id to be readable in MongoDB.
STORED_WITHIN = 60.0
#: Chats read from MongoDB at once.
READ_PARALLEL = 8


@dataclass
class Stored:
    """What MongoDB holds of the run's chats."""

    ids: Counter[str] = field(default_factory=Counter)  # message id -> documents
    last_seq: dict[str, int] = field(default_factory=dict)  # cid -> newest seq
    seq_holes: int = 0  # seqs missing below a chat's newest one


@dataclass
class MessageCheck:
    posted: int  # answered 202
    produced: int  # acked by Kafka to the external producer
    stored_once: int
    missing: list[str]
    duplicated: list[str]  # ids stored more than once
    unacknowledged: int  # stored, but the post got no clear answer
    seq_holes: int
    caught_up_seconds: float

    @property
    def ok(self) -> bool:
        return not self.missing and not self.duplicated


@dataclass
class LiveCheck:
    clients: int
    expected: int  # (client, chat, seq) deliveries owed
    missing: int
    clients_short: int  # clients that missed something
    duplicates: int  # dropped by seq (allowed: at-least-once)
    beyond: int  # seqs seen past what was stored (must be 0)
    foreign: int  # frames of chats not the client's (must be 0)
    gaps: int  # gap frames, paged over REST
    closes: Counter[str]  # server-side closes (each followed by a reconnect)
    drain_seconds: float

    @property
    def ok(self) -> bool:
        return self.clients == 0 or (not self.missing and not self.beyond and not self.foreign)


async def caught_up(kafka: KafkaLag, within: float = CATCH_UP_WITHIN) -> float:
    """Wait (bounded) until the consumer group has committed everything; seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        try:
            lags = await kafka.lags()
        except Exception:  # Kafka busy for a moment: ask again until the bound
            lags = {0: 1}
        if lags and not any(lags.values()):
            break
        await asyncio.sleep(1.0)
    return time.monotonic() - started


async def read_stored(mongo_url: str, database: str, plan: Plan) -> Stored:
    """Every stored message of the run's chats."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, timeoutMS=30000)
    history = client[database]["history"]

    async def of_chat(cid: str) -> list[dict[str, Any]]:
        # By `cid` (equality, which FerretDB answers from an index), not by a range of
        # `_id`s, which it answers with a scan of the whole collection.
        return await history.find({"cid": ObjectId(cid)}, {"id": 1, "seq": 1}).to_list(None)

    try:
        found = await bounded([chat.cid for chat in plan.chats], of_chat, READ_PARALLEL)
    finally:
        await client.close()
    stored = Stored()
    for chat, docs in zip(plan.chats, found, strict=True):
        seqs = {int(d["seq"]) for d in docs}
        stored.ids.update(str(d["id"]) for d in docs)
        stored.last_seq[chat.cid] = max(seqs, default=0)
        stored.seq_holes += stored.last_seq[chat.cid] - len(seqs)
    return stored


async def check_messages(
    kafka: KafkaLag, mongo_url: str, database: str, plan: Plan, rest: dict[str, Any]
) -> tuple[MessageCheck, Stored]:
    """Invariant 1, once the workers caught up: each acknowledged id stored exactly once."""
    took = await caught_up(kafka)
    acked = [mid for mid, _ in rest["acked"]] + [mid for mid, _ in rest["produced"]]
    started = time.monotonic()
    while True:
        stored = await read_stored(mongo_url, database, plan)
        missing = [mid for mid in acked if not stored.ids[mid]]
        if not missing or time.monotonic() - started > STORED_WITHIN:
            break
        await asyncio.sleep(2.0)
    wanted = set(acked)
    check = MessageCheck(
        posted=len(rest["acked"]),
        produced=len(rest["produced"]),
        stored_once=sum(1 for mid in wanted if stored.ids[mid] == 1),
        missing=missing,
        duplicated=[mid for mid in wanted if stored.ids[mid] > 1],
        unacknowledged=sum(1 for mid in stored.ids if mid not in wanted),
        seq_holes=stored.seq_holes,
        caught_up_seconds=took,
    )
    return check, stored


def check_live(live: dict[str, Any]) -> LiveCheck:
    """Invariant 2, from the live load's report (it knew what was stored)."""
    clients = live["clients"]
    closes: Counter[str] = Counter()
    for client in clients:
        closes.update(client["closes"])
    return LiveCheck(
        clients=len(clients),
        expected=sum(c["expected"] for c in clients),
        missing=sum(c["missing"] for c in clients),
        clients_short=sum(1 for c in clients if c["missing"]),
        duplicates=sum(c["duplicates"] for c in clients),
        beyond=sum(c["beyond"] for c in clients),
        foreign=sum(c["foreign"] for c in clients),
        gaps=sum(c["gaps"] for c in clients),
        closes=closes,
        drain_seconds=float(live["drain_seconds"]),
    )
