"""The live load process: `python -m bench.soak.load_live <plan.json> <final.json>`.

`plan.sockets` WebSocket clients of `GET /v1/stream`, spread over the users. Each says
hello with `since = {cid: 0}` for its chats (they are new), so it must see every message
of every chat of its user, seq 1 on: it tracks per chat the newest seq and the holes
(deduplicating by seq, as a real client does), pages a `gap` frame's range over REST,
and reconnects with `since` when the server closes it (signing in again first when the
close says the token was refused: 4001 or 4002). At the end the orchestrator says how
far each chat got; the load waits for its clients to get there (bounded) and reports
what is missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.soak.channel import serve
from bench.soak.clients import Sessions, call, sign_in
from bench.soak.plan import Account, Plan
from bench.soak.stats import IntervalStats
from contracts.live import CloseCode

#: Streams being opened (connect, hello, until `ready`) at once at the start.
OPEN_CONCURRENCY = 16
READY_WITHIN = 60.0
#: Pause before a reconnect: a client that was closed does not hammer the gateway.
RECONNECT_PAUSE = 1.0
#: Seconds the clients get to see every stored message once the load stopped.
DRAIN_WITHIN = 120.0
#: Close codes after which a client signs in again before it reconnects (its token was
#: refused); after any other close it reconnects with the token it has.
TOKEN_REFUSED = {str(int(CloseCode.UNAUTHORIZED)), str(int(CloseCode.TOKEN_EXPIRED))}


@dataclass
class Track:
    """What one client saw of one chat: the newest seq, and any seq skipped below it."""

    top: int = 0
    holes: set[int] = field(default_factory=set)
    duplicates: int = 0

    def see(self, seq: int) -> bool:
        """Count a seq; True the first time it is seen."""
        if seq > self.top:
            self.holes.update(range(self.top + 1, seq))
            self.top = seq
            return True
        if seq in self.holes:
            self.holes.discard(seq)
            return True
        self.duplicates += 1
        return False

    def missing(self, last: int) -> int:
        """Seqs 1..last not seen."""
        return max(0, last - self.top) + sum(1 for s in self.holes if s <= last)


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

    @property
    def open(self) -> bool:
        return self.ws is not None and not self.ws.closed

    def caught_up(self, expect: dict[str, int]) -> bool:
        return all(not t.missing(expect.get(cid, 0)) for cid, t in self.tracks.items())

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            code = await self._session()
            if stopping.is_set():
                return
            self.closes[code] += 1
            self.load.stats.record("stream", f"ws:{code}", None)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), RECONNECT_PAUSE)
            if code in TOKEN_REFUSED and not stopping.is_set():
                await sign_in(self.load.sessions.of(self.account), self.load.api, self.account)

    async def _session(self) -> str:
        """One connection from hello to close; its close code (or the failure's kind)."""
        http = self.load.streams.of(self.account)
        started = time.perf_counter()
        try:
            async with http.ws_connect(f"{self.load.api}/v1/stream", autoping=True) as ws:
                self.ws = ws
                since = {cid: t.top for cid, t in self.tracks.items()}
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
            track = self.tracks.get(frame["cid"])
            if track is None:
                self.foreign += 1
            elif track.see(int(frame["seq"])):
                latency = push_latency(str(frame["message"].get("text", "")))
                self.load.stats.record("push", "frame", latency)
        elif kind == "ready":  # connect -> ready, on every (re)connection
            self.load.stats.record("stream", "200", time.perf_counter() - started)
            self.ready.set()
        elif kind == "gap":
            self.gaps += 1
            await self._page(str(frame["cid"]), int(frame["fromSeq"]), int(frame["toSeq"]))

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
        for listener in self.listeners:
            if listener.ws is not None:
                with contextlib.suppress(Exception):  # closing at the end is best effort
                    await listener.ws.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.streams.close()
        await self.sessions.close()
        return {
            "drain_seconds": drained,
            "clients": [x.report(expect) for x in self.listeners],
        }


def main() -> None:
    plan_path, final_path = Path(sys.argv[1]), Path(sys.argv[2])
    asyncio.run(serve(LiveLoad(Plan.load(plan_path)), "load-live", final_path))


if __name__ == "__main__":
    main()
