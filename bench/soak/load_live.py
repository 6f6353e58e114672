"""The live load process: `python -m bench.soak.load_live <plan.json> <final.json>`.

`plan.sockets` WebSocket clients of `GET /v1/stream`, spread over the users. Each says
hello with `since = {cid: 0}` for its chats (they are new), so it must see every message
of every chat of its user, seq 1 on: it tracks per chat the newest seq and the holes
(deduplicating by seq, as a real client does), pages a `gap` frame's range over REST,
and reconnects with `since` when the server closes it (signing in again first when the
close says the token was refused: 4001 or 4002). On each connection it also checks the
order docs/live.md promises (`tracks.Order`): per chat, seqs in order, every hole named
by a gap frame. At the end the orchestrator says how far each chat got; the load waits
for its clients to get there (bounded) and reports what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.soak.channel import serve
from bench.soak.clients import Sessions, call, sign_in
from bench.soak.plan import Account, Plan
from bench.soak.stats import IntervalStats
from bench.soak.tracks import OUT_OF_ORDER, UNCOVERED, Order, Track
from contracts.live import CloseCode

#: Streams being opened (connect, hello, until `ready`) at once at the start.
OPEN_CONCURRENCY = 16
READY_WITHIN = 60.0
#: Pause before a reconnect: a client that was closed does not hammer the gateway.
RECONNECT_PAUSE = 1.0
#: Seconds the clients get to see every stored message once the load stopped.
DRAIN_WITHIN = 120.0
#: Seconds the clients get to close and end once told to stop; then they are cancelled.
CLOSE_WITHIN = 15.0
#: Order faults (`tracks.Order`) a client describes in its report, besides counting them.
EXAMPLES = 3
#: Close codes after which a client signs in again before it reconnects (its token was
#: refused); after any other close it reconnects with the token it has.
TOKEN_REFUSED = {str(int(CloseCode.UNAUTHORIZED)), str(int(CloseCode.TOKEN_EXPIRED))}


def push_latency(text: str) -> float | None:
    """Seconds since the text's send time (`... @<unix time>`), if it carries one."""
    _, at, stamp = text.rpartition(" @")
    try:
        return time.time() - float(stamp) if at else None
    except ValueError:
        return None


class Listener:
    """One stream client; `run` keeps it connected until the load stops."""

    def __init__(self, load: LiveLoad, account: Account, cids: list[str]) -> None:
        self.load = load
        self.account = account
        self.tracks = {cid: Track() for cid in cids}
        self.ready = asyncio.Event()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.closes: Counter[str] = Counter()  # close codes seen while running
        self.gaps = 0
        self.foreign = 0  # message frames of chats not the user's
        self.failures: list[str] = []
        self.order = Order()  # the current connection's
        self.faults: Counter[str] = Counter()  # order faults over every connection
        self.examples: list[str] = []

    @property
    def open(self) -> bool:
        return self.ws is not None and not self.ws.closed

    def caught_up(self, expect: dict[str, int]) -> bool:
        return all(not t.missing(expect.get(cid, 0)) for cid, t in self.tracks.items())

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            code = await self._session(stopping)
            if stopping.is_set():
                return
            self.closes[code] += 1
            self.load.stats.record("stream", f"ws:{code}", None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), RECONNECT_PAUSE)
            if code in TOKEN_REFUSED and not stopping.is_set():
                await sign_in(self.load.sessions.of(self.account), self.load.api, self.account)

    async def _session(self, stopping: asyncio.Event) -> str:
        """One connection from hello to close; its close code (or the failure's kind)."""
        http = self.load.streams.of(self.account)
        started = time.perf_counter()
        try:
            async with http.ws_connect(f"{self.load.api}/v1/stream", autoping=True) as ws:
                self.ws = ws
                if stopping.is_set():  # stop() may have closed the others already
                    return "stopping"
                since = {cid: t.top for cid, t in self.tracks.items()}
                self.order = Order(since)
                hello = {"type": "hello", "token": self.account.token, "since": since}
                await ws.send_str(orjson.dumps(hello).decode())
                async for msg in ws:
                    if msg.type is aiohttp.WSMsgType.TEXT:
                        await self._frame(orjson.loads(msg.data), started)
                return str(ws.close_code)
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            if len(self.failures) < 3:  # the first ones say why; the count is in closes
                self.failures.append(repr(exc)[:200])
            return type(exc).__name__

    async def _frame(self, frame: dict[str, Any], started: float) -> None:
        kind = frame.get("type")
        if kind == "message":
            cid, seq = str(frame["cid"]), int(frame["seq"])
            track = self.tracks.get(cid)
            if track is None:
                self.foreign += 1
                return
            self._fault(cid, self.order.message(cid, seq), f"seq {seq}")
            first_time = track.see(seq)
            # Push latency is delivery to the other members, as in live_bench: the author
            # (who posted, or in whose name a record was produced) is left out.
            if first_time and frame["message"].get("uid") != self.account.uid:
                latency = push_latency(str(frame["message"].get("text", "")))
                self.load.stats.record("push", "frame", latency)
        elif kind == "ready":  # connect -> ready, on every (re)connection
            self.load.stats.record("stream", "200", time.perf_counter() - started)
            self.ready.set()
        elif kind == "gap":
            self.gaps += 1
            cid, first, last = str(frame["cid"]), int(frame["fromSeq"]), int(frame["toSeq"])
            if cid not in self.tracks:
                self.foreign += 1
                return
            self._fault(cid, self.order.gap(cid, first, last), f"gap {first}..{last}")
            await self._page(cid, first, last)
        elif kind in ("chat", "read") and str(frame.get("cid")) not in self.tracks:
            # The soak's users are in their chats from the start: a chat or read frame of
            # another chat is someone else's.
            self.foreign += 1

    def _fault(self, cid: str, fault: str | None, frame: str) -> None:
        """Count a frame that broke the connection's order; describe the first few."""
        if fault is None:
            return
        self.faults[fault] += 1
        if len(self.examples) < EXAMPLES:
            since = self.order.since.get(cid)
            self.examples.append(f"chat {cid}: {frame}, {fault} (since {since})")

    async def _page(self, cid: str, first: int, last: int) -> None:
        """Read seqs first..last of a chat over REST, as the protocol asks after a gap."""
        track = self.tracks.get(cid)
        http = self.load.sessions.of(self.account)
        after = first - 1
        while track is not None and after < last:
            url = f"{self.load.api}/v1/chats/{cid}/messages?afterSeq={after}&limit=200"
            code, page, seconds = await call(http, "GET", url, self.account.token)
            self.load.stats.record("gap_page", code, seconds)
            if code != "200" or not isinstance(page, dict) or not page["data"]:
                return
            seqs = sorted(int(m["seq"]) for m in page["data"])
            for seq in seqs:
                if seq <= last:
                    track.see(seq)
            after = seqs[-1]

    def report(self, expect: dict[str, int]) -> dict[str, Any]:
        return {
            "uid": self.account.uid,
            "expected": sum(expect.get(cid, 0) for cid in self.tracks),
            "missing": sum(t.missing(expect.get(cid, 0)) for cid, t in self.tracks.items()),
            "duplicates": sum(t.duplicates for t in self.tracks.values()),
            "beyond": sum(max(0, t.top - expect.get(cid, 0)) for cid, t in self.tracks.items()),
            "gaps": self.gaps,
            "foreign": self.foreign,
            "out_of_order": self.faults[OUT_OF_ORDER],
            "uncovered": self.faults[UNCOVERED],
            "order_examples": self.examples,
            "closes": dict(self.closes),
            "failures": self.failures,
        }


class LiveLoad:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.api = plan.api_url
        self.streams = Sessions(limit_per_address=0, timeout=None)  # one connection each
        self.sessions = Sessions()  # sign-ins and gap pages
        self.stats = IntervalStats()
        self._stopping = asyncio.Event()
        chats_of = plan.chats_of()
        accounts = plan.accounts
        self.listeners = [
            Listener(self, account, [c.cid for c in chats_of[account.index]])
            for account in (accounts[i % len(accounts)] for i in range(plan.sockets))
        ]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> dict[str, Any]:
        """Open every stream, a few at a time, and wait (bounded) for their `ready`."""
        gate = asyncio.Semaphore(OPEN_CONCURRENCY)

        async def open_one(listener: Listener) -> None:
            async with gate:
                self._tasks.append(asyncio.create_task(listener.run(self._stopping)))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(listener.ready.wait(), READY_WITHIN)

        await asyncio.gather(*(open_one(listener) for listener in self.listeners))
        ready = sum(1 for listener in self.listeners if listener.ready.is_set())
        return {"sockets": len(self.listeners), "ready": ready}

    def take_stats(self) -> IntervalStats:
        stats, self.stats = self.stats, IntervalStats()
        stats.gauges["live_open"] = float(sum(1 for x in self.listeners if x.open))
        return stats

    async def stop(self, command: dict[str, Any]) -> dict[str, Any]:
        """Wait until every client saw what was stored (bounded), then close them all."""
        expect: dict[str, int] = {k: int(v) for k, v in command.get("expect", {}).items()}
        started = time.monotonic()
        while time.monotonic() - started < DRAIN_WITHIN:
            if all(x.caught_up(expect) for x in self.listeners):
                break
            await asyncio.sleep(0.2)
        drained = time.monotonic() - started
        self._stopping.set()
        await self._close_all()
        await self.streams.close()
        await self.sessions.close()
        return {
            "drain_seconds": drained,
            "clients": [x.report(expect) for x in self.listeners],
        }

    async def _close_all(self) -> None:
        """Close every socket at once and wait (bounded) for the clients to end. A client
        that connects meanwhile sees `stopping` set and closes its own socket."""

        async def close(ws: aiohttp.ClientWebSocketResponse) -> None:
            with contextlib.suppress(Exception):  # closing at the end is best effort
                await ws.close()

        closing = [asyncio.create_task(close(x.ws)) for x in self.listeners if x.ws is not None]
        waited = closing + self._tasks
        if not waited:
            return
        await asyncio.wait(waited, timeout=CLOSE_WITHIN)
        for task in waited:  # still running after the bound: a close that hangs
            task.cancel()
        await asyncio.wait(waited, timeout=CLOSE_WITHIN)  # one that ignores it is left


def main() -> None:
    plan_path, final_path = Path(sys.argv[1]), Path(sys.argv[2])
    asyncio.run(serve(LiveLoad(Plan.load(plan_path)), "load-live", final_path))


if __name__ == "__main__":
    main()
