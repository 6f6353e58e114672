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
from pymongo.asynchronous.database import AsyncDatabase

from bench.soak.plan import Plan
from bench.soak.sampler import KafkaLag
from dialogue_worker.domain.history import page_key, page_of
from platform_common.gather import bounded

#: Seconds the workers get to consume what the load left in the topic.
CATCH_UP_WITHIN = 180.0
#: Seconds, after that, for every acknowledged id to be readable in MongoDB.
STORED_WITHIN = 60.0
#: Chats read from MongoDB at once.
READ_PARALLEL = 8
#: Order faults of the live clients the summary describes.
EXAMPLES = 3


@dataclass
class Stored:
    """What MongoDB holds of the run's chats."""

    ids: Counter[tuple[str, str]] = field(default_factory=Counter)  # (cid, id) -> documents
    last_seq: dict[str, int] = field(default_factory=dict)  # cid -> newest seq
    seq_holes: int = 0  # seqs missing below a chat's newest one


@dataclass
class MessageCheck:
    posted: int  # answered 202
    produced: int  # acked by Kafka to the external producer
    stored_once: int
    missing: list[str]
    duplicated: list[str]  # ids stored more than once (in one chat or across chats)
    unacknowledged: int  # stored, but no post or record was acknowledged for it
    seq_holes: int  # seqs missing below a chat's newest one (seqs are gap-free per chat)
    caught_up: bool  # the consumer group's lag reached 0 within `caught_up_within`
    caught_up_seconds: float
    caught_up_within: float = CATCH_UP_WITHIN
    unclear: int = 0  # posts and records without a clear answer (may be stored)
    reacknowledged: list[str] = field(default_factory=list)  # ids acknowledged twice

    @property
    def acknowledged(self) -> int:
        return self.posted + self.produced

    def problems(self) -> list[str]:
        """What broke the invariant, one phrase each; none when it held."""
        found = []
        if not self.acknowledged:
            found.append("no message was acknowledged")
        if self.missing:
            found.append(f"{len(self.missing)} acknowledged messages missing")
        if self.duplicated:
            found.append(f"{len(self.duplicated)} stored more than once")
        if self.seq_holes:
            found.append(f"{self.seq_holes} seq holes")
        if self.reacknowledged:
            found.append(f"{len(self.reacknowledged)} ids acknowledged to two posts or records")
        if self.unacknowledged > self.unclear:
            found.append(
                f"{self.unacknowledged} stored without an acknowledgement, more than the"
                f" {self.unclear} posts and records without a clear answer"
            )
        if not self.caught_up:
            found.append(f"the workers did not catch up within {self.caught_up_within:g} s")
        return found

    @property
    def ok(self) -> bool:
        return not self.problems()


@dataclass
class LiveCheck:
    clients: int
    expected: int  # (client, chat, seq) deliveries owed
    missing: int
    clients_short: int  # clients that missed something
    duplicates: int  # dropped by seq (allowed: at-least-once)
    beyond: int  # seqs seen past what was stored (must be 0)
    foreign: int  # frames of chats not the client's (must be 0)
    out_of_order: int  # frames behind what their socket had sent of the chat (must be 0)
    uncovered: int  # frames past the next seq with no gap frame between (must be 0)
    gaps: int  # gap frames, paged over REST
    closes: Counter[str]  # server-side closes (each followed by a reconnect)
    drain_seconds: float
    examples: list[str] = field(default_factory=list)  # a few order faults, described

    def problems(self) -> list[str]:
        """What broke the invariant, one phrase each; none when it held."""
        if not self.clients:
            return []
        counted = {
            "deliveries missing": self.missing,
            "seqs beyond the store": self.beyond,
            "frames of foreign chats": self.foreign,
            "frames out of order": self.out_of_order,
            "uncovered gaps": self.uncovered,
        }
        return [f"{n} {what}" for what, n in counted.items() if n]

    @property
    def unchecked(self) -> bool:
        """No socket was open (`--sockets 0`), or their users were owed nothing (a short
        run, or chats of theirs the load did not pick): nothing was checked, nothing was
        violated. With no socket the summary used to say nothing of live delivery."""
        return not self.expected

    @property
    def ok(self) -> bool:
        return not self.problems()


async def caught_up(
    kafka: KafkaLag, within: float = CATCH_UP_WITHIN, every: float = 1.0
) -> tuple[bool, float]:
    """Wait (bounded) until the consumer group has committed everything: whether it did,
    and the seconds taken."""
    started = time.monotonic()
    while True:
        try:
            lags = await kafka.lags()
        except Exception:  # Kafka busy for a moment: ask again until the bound
            lags = {}
        took = time.monotonic() - started
        if lags and not any(lags.values()):
            return True, took
        if took >= within:
            return False, took
        await asyncio.sleep(min(every, within - took))


async def read_stored(mongo_url: str, database: str, plan: Plan) -> Stored:
    """Every stored message of the run's chats."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, timeoutMS=30000)
    try:
        return await stored_of(client[database], plan)
    finally:
        await client.close()


async def stored_of(db: AsyncDatabase[dict[str, Any]], plan: Plan) -> Stored:
    """What `db` holds of the plan's chats: ids, newest seq and seq holes of each."""
    cids = [chat.cid for chat in plan.chats]
    found = await bounded(cids, lambda cid: history_of(db, cid), READ_PARALLEL)
    stored = Stored()
    for chat, docs in zip(plan.chats, found, strict=True):
        seqs = {int(d["seq"]) for d in docs}
        stored.ids.update((chat.cid, str(d["id"])) for d in docs)
        stored.last_seq[chat.cid] = max(seqs, default=0)
        stored.seq_holes += stored.last_seq[chat.cid] - len(seqs)
    return stored


async def history_of(db: AsyncDatabase[dict[str, Any]], cid: str) -> list[dict[str, Any]]:
    """Every stored message of a chat, page by page: `history` is indexed by `page` only
    (a filter on `cid` is a scan of the whole collection on FerretDB). Every page up to
    the newest seq the chat's document names, then on to the first empty one, so a
    message stored past that seq or a page missing whole still shows."""
    chat = await db["chats"].find_one({"_id": ObjectId(cid)}, {"lastSeq": 1})
    newest = page_of(int((chat or {}).get("lastSeq") or 0))
    docs: list[dict[str, Any]] = []
    page = 0
    while True:
        query = {"page": page_key(cid, page)}
        found = await db["history"].find(query, {"id": 1, "seq": 1}).to_list(None)
        docs += found
        if not found and page > newest:
            return docs
        page += 1


async def check_messages(
    kafka: KafkaLag, mongo_url: str, database: str, plan: Plan, rest: dict[str, Any]
) -> tuple[MessageCheck, Stored]:
    """Invariant 1, once the workers caught up: each acknowledged id stored exactly once."""
    done, took = await caught_up(kafka)
    started = time.monotonic()
    while True:
        stored = await read_stored(mongo_url, database, plan)
        check = judge_messages(rest, stored, done, took)
        # Holes too: chats are read page by page, not as one snapshot, and a post the
        # client gave up on may still be stored between two page reads.
        if (not check.missing and not stored.seq_holes) or (
            time.monotonic() - started > STORED_WITHIN
        ):
            return check, stored
        await asyncio.sleep(2.0)


def judge_messages(rest: dict[str, Any], stored: Stored, caught: bool, took: float) -> MessageCheck:
    """Invariant 1 over what is stored: each acknowledged (id, chat) stored there once,
    and no id stored twice, acknowledged or not. By id alone, a message stored in another
    chat of the run counted as stored, and an id the posts got no clear answer for could
    be stored twice unseen (found in review)."""
    acknowledged = Counter((cid, mid) for mid, cid in [*rest["acked"], *rest["produced"]])
    wanted = set(acknowledged)
    per_id: Counter[str] = Counter()
    for (_, mid), documents in stored.ids.items():
        per_id[mid] += documents
    return MessageCheck(
        posted=len(rest["acked"]),
        produced=len(rest["produced"]),
        stored_once=sum(1 for key in wanted if stored.ids[key] == 1 and per_id[key[1]] == 1),
        missing=sorted(mid for cid, mid in wanted if not stored.ids[(cid, mid)]),
        duplicated=sorted(mid for mid, documents in per_id.items() if documents > 1),
        unacknowledged=sum(1 for key in stored.ids if key not in wanted),
        seq_holes=stored.seq_holes,
        caught_up=caught,
        caught_up_seconds=took,
        # Only a post or record without a clear answer may be stored unacknowledged: a
        # stored refusal means a client's retry stores the message twice.
        unclear=sum(rest.get("unclear", {}).values()),
        # Two 202s (or acks) with one id, and the set above kept one of them.
        reacknowledged=sorted(mid for (_, mid), n in acknowledged.items() if n > 1),
    )


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
        out_of_order=sum(c["out_of_order"] for c in clients),
        uncovered=sum(c["uncovered"] for c in clients),
        gaps=sum(c["gaps"] for c in clients),
        closes=closes,
        drain_seconds=float(live["drain_seconds"]),
        examples=[e for c in clients for e in c["order_examples"]][:EXAMPLES],
    )
