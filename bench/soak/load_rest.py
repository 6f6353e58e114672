"""The REST load process: `python -m bench.soak.load_rest <plan.json> <final.json>`.

Each operation runs open-loop at its own rate (operation i is due at start + i / rate,
whatever earlier ones are doing), so a slow platform is seen as latency, not as a
quietly lower load. At most `in_flight` of one operation run at once; one that would
exceed that is not started and counted as shed (the load is bounded). Posts and the
external producer remember what was acknowledged, for the end-of-run check.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from bson import ObjectId

from bench.soak.channel import serve
from bench.soak.clients import Sessions, call, sign_in
from bench.soak.plan import Account, ChatPicker, Plan
from bench.soak.stats import IntervalStats
from contracts.records import MessageRecord

#: Tokens live an hour (JWT_TTL); a user whose token is older signs in again first.
TOKEN_REFRESH = 45 * 60.0
PAGE_SIZE = 20

Action = Callable[[], Awaitable[None]]


def stamped(run: str, kind: str, n: int) -> str:
    """A message text that is unique and carries its send time (for the push latency)."""
    return f"soak {run} {kind}{n} @{time.time():.6f}"


class RestLoad:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.api = plan.api_url
        self.rng = random.Random(plan.seed)
        self.pick_chat = ChatPicker(plan, self.rng)
        self.chats_of = plan.chats_of()
        self.sessions = Sessions()
        self.stats = IntervalStats()
        self.acked: list[tuple[str, str]] = []  # (message id, cid) answered 202
        self.produced: list[tuple[str, str]] = []  # (record id, cid) acked by Kafka
        self.unclear: Counter[str] = Counter()  # posts without a clear answer, by code
        self.newest_seq: dict[str, int] = {}  # cid -> newest seq any read saw
        self.token_at = {a.index: time.monotonic() for a in plan.accounts}
        self.producer: AIOKafkaProducer | None = None
        self._stopping = asyncio.Event()
        self._pacers: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._in_flight: Counter[str] = Counter()
        self._posts = 0

    # --- the channel -------------------------------------------------------------------
    async def start(self) -> dict[str, Any]:
        if self.plan.rates.get("produce", 0) > 0:
            self.producer = AIOKafkaProducer(
                bootstrap_servers=self.plan.kafka_bootstrap, acks="all", linger_ms=5
            )
            await self.producer.start()
        actions: dict[str, Action] = {
            "sign_in": self.sign_in,
            "post": self.post,
            "history": self.history,
            "chat_list": self.chat_list,
            "read_mark": self.read_mark,
            "produce": self.produce,
        }
        for op, rate in self.plan.rates.items():
            if rate > 0:
                self._pacers.append(asyncio.create_task(self._pace(op, rate, actions[op])))
        return {"operations": {op: r for op, r in self.plan.rates.items() if r > 0}}

    def take_stats(self) -> IntervalStats:
        stats, self.stats = self.stats, IntervalStats()
        stats.gauges["rest_in_flight"] = float(sum(self._in_flight.values()))
        return stats

    async def stop(self, command: dict[str, Any]) -> dict[str, Any]:
        self._stopping.set()
        await asyncio.gather(*self._pacers, return_exceptions=True)
        await asyncio.gather(*self._running, return_exceptions=True)  # each is bounded
        await self.sessions.close()
        if self.producer is not None:
            await self.producer.stop()
        return {
            "acked": self.acked,
            "produced": self.produced,
            "unclear": dict(self.unclear),
        }

    # --- pacing ------------------------------------------------------------------------
    async def _pace(self, op: str, rate: float, action: Action) -> None:
        began = time.monotonic()
        for i in range(sys.maxsize):
            delay = began + i / rate - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            if self._in_flight[op] >= self.plan.in_flight:
                self.stats.shed[op] += 1
                continue
            # Counted when created, not when it first runs: a catch-up burst creates
            # several before any runs, and each must see the others.
            self._in_flight[op] += 1
            task = asyncio.create_task(self._counted(op, action))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _counted(self, op: str, action: Action) -> None:
        """Run one operation; it leaves the in-flight count `_pace` put it in."""
        try:
            await action()
        finally:
            self._in_flight[op] -= 1

    # --- helpers -----------------------------------------------------------------------
    def _user(self) -> Account:
        return self.rng.choice(self.plan.accounts)

    async def _token(self, account: Account) -> str:
        """The account's token, renewed by a sign-in (counted as one) when it is old."""
        if time.monotonic() - self.token_at[account.index] > TOKEN_REFRESH:
            code, seconds = await sign_in(self.sessions.of(account), self.api, account)
            self.stats.record("sign_in", code, seconds)
            if code == "200":
                self.token_at[account.index] = time.monotonic()
        return account.token

    async def _get(self, account: Account, path: str) -> tuple[str, Any, float]:
        token = await self._token(account)
        return await call(self.sessions.of(account), "GET", self.api + path, token)

    # --- operations: each records its requests in self.stats -----------------------------
    async def sign_in(self) -> None:
        account = self._user()
        code, seconds = await sign_in(self.sessions.of(account), self.api, account)
        if code == "200":
            self.token_at[account.index] = time.monotonic()
        self.stats.record("sign_in", code, seconds)

    async def post(self) -> None:
        chat = self.pick_chat()
        sender = self.plan.accounts[self.rng.choice(chat.members)]
        self._posts += 1
        body = {"txt": stamped(self.plan.run, "p", self._posts)}
        token = await self._token(sender)
        url = f"{self.api}/v1/chats/{chat.cid}/messages"
        code, answer, seconds = await call(self.sessions.of(sender), "POST", url, token, body)
        if code == "202" and isinstance(answer, dict):
            self.acked.append((str(answer["id"]), chat.cid))
        elif code in ("conn", "timeout", "unparsed"):
            self.unclear[code] += 1  # may be stored: counted, not expected
        elif code == "503" and isinstance(answer, dict) and answer.get("code") == "5031":
            self.unclear["5031"] += 1  # sent, not confirmed: may be stored too
        self.stats.record("post", code, seconds)

    async def history(self) -> None:
        """One of the newest `pages` pages of a chat: the newest, or 1 .. pages - 1
        pages before it (beforeSeq; the newest while the chat is shorter).

        One request per read, so the request rate stays what was asked while chats grow
        (following nextCursor instead made reads deepen, and the load rise, over the run).
        """
        chat = self.pick_chat()
        reader = self.plan.accounts[self.rng.choice(chat.members)]
        depth = self.rng.randrange(self.plan.pages)
        newest = self.newest_seq.get(chat.cid, 0)
        before = newest + 1 - depth * PAGE_SIZE
        query = f"&beforeSeq={before}" if depth and before > 1 else ""
        path = f"/v1/chats/{chat.cid}/messages?limit={PAGE_SIZE}{query}"
        code, answer, seconds = await self._get(reader, path)
        self.stats.record("history", code, seconds)
        if code == "200" and isinstance(answer, dict) and answer["data"] and not query:
            self.newest_seq[chat.cid] = int(answer["data"][0]["seq"] or 0)

    async def chat_list(self) -> None:
        """A user's chats by activity, following the cursor, one request per page."""
        account = self._user()
        cursor = ""
        for _ in range(self.plan.pages):
            code, answer, seconds = await self._get(account, f"/v1/chats?limit=10{cursor}")
            self.stats.record("chat_list", code, seconds)
            if code != "200" or not isinstance(answer, dict):
                return
            for chat in answer["data"]:
                self.newest_seq[chat["id"]] = int(chat.get("lastSeq") or 0)
            if answer["nextCursor"] is None:
                return
            cursor = f"&cursor={answer['nextCursor']}"

    async def read_mark(self) -> None:
        """Move a user's read marker to the newest seq the reads have seen of the chat."""
        account = self._user()
        chats = self.chats_of[account.index]
        if not chats:
            return
        chat = self.rng.choice(chats)
        token = await self._token(account)
        url = f"{self.api}/v1/chats/{chat.cid}/read"
        body = {"seq": self.newest_seq.get(chat.cid, 0)}
        code, _, seconds = await call(self.sessions.of(account), "PUT", url, token, body)
        self.stats.record("read_mark", code, seconds)

    async def produce(self) -> None:
        """One record in the topic's schema, written as an external service would."""
        assert self.producer is not None
        chat = self.pick_chat()
        author = self.plan.accounts[self.rng.choice(chat.members)]
        self._posts += 1
        record = MessageRecord(
            v=1,
            id=str(ObjectId()),
            cid=chat.cid,
            uid=author.uid,
            text=stamped(self.plan.run, "k", self._posts),
            createdAt=int(time.time()),
        )
        started = time.perf_counter()
        try:
            await self.producer.send_and_wait(self.plan.topic, record.to_bytes(), key=record.key())
        except Exception as exc:  # any producer failure is a figure of the run, by kind
            self.stats.record("produce", f"kafka:{type(exc).__name__}", None)
            self.unclear["kafka"] += 1  # a timeout may have been written all the same
            return
        self.produced.append((record.id, chat.cid))
        self.stats.record("produce", "ack", time.perf_counter() - started)


def main() -> None:
    plan_path, final_path = Path(sys.argv[1]), Path(sys.argv[2])
    asyncio.run(serve(RestLoad(Plan.load(plan_path)), "load-rest", final_path))


if __name__ == "__main__":
    main()
