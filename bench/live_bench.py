"""Live stream benchmark: push latency through `GET /v1/stream` under steady load with many
sockets open on one gateway, then the gateway's memory per idle socket. Prints its
figures; asserts nothing.

    .venv/bin/python -m bench.live_bench [--sockets 1000] [--idle 5000] [--rate 50] [--seconds 30]

1. Signs up `--sockets` users, pairs them into chats, opens one stream per user and waits
   for every `ready`. Then posts `--rate` messages a second for `--seconds` seconds over
   the chats (open loop: post i leaves at start + i / rate, whatever earlier posts are
   doing), each by one member, and times until the *other* member's socket has the
   `message` frame (POST sent -> frame read, one clock: this process's perf_counter).
   What has not arrived `--drain` seconds after the last answer is lost.
2. Reads the gateway's RSS with those sockets open and quiet, opens `--idle` more streams
   (the same users, several sockets each), lets the RSS settle, reads it again and
   divides; the `gateway_stream_sockets` gauge from /metrics confirms the count.

Needs the local infrastructure running (`python -m infra.local up`). It starts a private
Consul agent, two workers and `python -m gateway`, exactly as gateway_bench does. This
process is the only client and shares the machine with the platform: the client's own
event-loop lag is printed so a slow client is not mistaken for a slow gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench._common import LoopLag, number, percentile, private_platform
from infra.local import LocalSettings
from infra.processes.gateway import GatewayProcess
from infra.processes.worker import metric_sum
from platform_common.gather import bounded
from platform_common.local import LOCAL_ADMIN_TOKEN

PASSWORD = "secret1"
#: Streams being opened (upgrade, hello, until `ready`) at once.
OPEN_CONCURRENCY = 200
#: Sign-ups and chat creations in flight at once.
SETUP_CONCURRENCY = 32
#: Seconds one stream may take from connect to `ready`.
READY_WITHIN = 60.0
#: RSS samples a second apart closer than this (KB) count as settled.
SETTLED_KB = 256
SETTLE_WITHIN = 30.0


@dataclass(frozen=True)
class Account:
    uid: int
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Deliveries:
    """Posted messages by tag, and when the receiving member's socket read each."""

    sent: dict[str, tuple[float, int]] = field(default_factory=dict)  # tag -> (at, receiver)
    accepted: set[str] = field(default_factory=set)  # answered 202
    latency: dict[str, float] = field(default_factory=dict)  # tag -> seconds
    duplicates: int = 0
    #: Set (while draining) once every accepted message has arrived.
    all_in: asyncio.Event | None = None

    def seen(self, uid: int, frame: dict[str, Any], at: float) -> None:
        tag = frame.get("message", {}).get("text", "")
        sent = self.sent.get(tag)
        if sent is None or sent[1] != uid:
            return  # the sender's own copy, or not one of ours
        if tag in self.latency:
            self.duplicates += 1
            return
        self.latency[tag] = at - sent[0]
        if self.all_in is not None and not self.missing():
            self.all_in.set()

    def missing(self) -> int:
        return len(self.accepted - self.latency.keys())

    async def drain(self, within: float) -> None:
        """Wait (at most `within` s) until every accepted message was read by its receiver."""
        self.all_in = asyncio.Event()
        if not self.missing():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self.all_in.wait()


class Live:
    """One stream socket: connects, says hello, reads every frame until it closes."""

    def __init__(self, uid: int, on_message: Callable[[int, dict[str, Any], float], None]) -> None:
        self.uid = uid
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self._on_message = on_message
        self._reader: asyncio.Task[None] | None = None

    async def open(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self.ws = await http.ws_connect(f"{url}/v1/stream", heartbeat=None, autoping=True)
        hello = {"type": "hello", "token": token, "since": {}}
        await self.ws.send_str(orjson.dumps(hello).decode())
        self._reader = asyncio.create_task(self._read(self.ws))
        async with asyncio.timeout(READY_WITHIN):
            await self.ready

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                at = time.perf_counter()
                frame = orjson.loads(msg.data)
                kind = frame.get("type")
                if kind == "message":
                    self._on_message(self.uid, frame, at)
                elif kind == "ready" and not self.ready.done():
                    self.ready.set_result(None)
        finally:
            self.close_code = ws.close_code
            if not self.ready.done():
                self.ready.set_exception(RuntimeError(f"closed before ready: {ws.close_code}"))

    @property
    def open_now(self) -> bool:
        return self.ws is not None and not self.ws.closed

    @property
    def is_ready(self) -> bool:
        done = self.ready.done() and not self.ready.cancelled()
        return done and self.ready.exception() is None and self.open_now

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError, TimeoutError):
                await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if not self.ready.done():
            self.ready.cancel()
        elif not self.ready.cancelled():
            self.ready.exception()  # retrieved: no "never retrieved" warning


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def _settled_rss(pid: int) -> tuple[int, bool]:
    """The RSS (KB) once two samples a second apart agree; (last sample, False) if never."""
    deadline = time.monotonic() + SETTLE_WITHIN
    previous = _rss_kb(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.0)
        current = _rss_kb(pid)
        if abs(current - previous) <= SETTLED_KB:
            return current, True
        previous = current
    return previous, False


async def _gauge(http: aiohttp.ClientSession, url: str) -> float:
    """The gateway's gateway_stream_sockets gauge (streams open)."""
    headers = {"Authorization": f"Bearer {LOCAL_ADMIN_TOKEN}"}
    async with http.get(f"{url}/metrics", headers=headers) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise RuntimeError(f"GET /metrics answered {resp.status}: {text[:200]}")
    return metric_sum(text, "gateway_stream_sockets")


async def _open_many(
    http: aiohttp.ClientSession,
    url: str,
    accounts: list[Account],
    sink: list[Live],
    on_message: Callable[[int, dict[str, Any], float], None],
) -> tuple[float, list[Exception]]:
    """Open one stream per account (in `sink` as soon as made); (seconds, failures)."""

    async def make(account: Account) -> Exception | None:
        live = Live(account.uid, on_message)
        sink.append(live)
        try:
            await live.open(http, url, account.token)
        except Exception as exc:  # a stream that fails is counted, not fatal: it is a figure
            return exc
        return None

    started = time.perf_counter()
    results = await bounded(accounts, make, OPEN_CONCURRENCY)
    return time.perf_counter() - started, [r for r in results if r is not None]


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"needs {needed} file descriptors; ulimit -n allows {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def main(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    args.sockets += args.sockets % 2  # every user has a partner
    _raise_fd_limit(args.sockets + args.idle + 500)
    connections = str(max(12_000, args.sockets + args.idle + 1000))
    figures: list[str] = []
    gateway: GatewayProcess | None = None
    async with private_platform(
        LocalSettings.from_env(), "live_bench", {"MAX_CONNECTIONS": connections}
    ) as platform:
        gateway = platform.gateway
        figures = await _bench(args, gateway, platform.run)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    for line in figures:
        print(line)
    print(f"  run took {time.perf_counter() - began:.0f} s; {_log_summary(gateway)}")


def _log_summary(gateway: GatewayProcess | None) -> str:
    if gateway is None:
        return "no gateway"
    levels: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for line in gateway.log_lines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            levels["unparsed"] += 1
            continue
        level = str(entry.get("level", "?"))
        if level in ("warning", "error", "critical"):
            levels[level] += 1
            examples.setdefault(str(entry.get("msg", ""))[:80], level)
    if not levels:
        return f"gateway log clean ({gateway.log_file})"
    shown = "; ".join(f"{lvl}: {msg}" for msg, lvl in list(examples.items())[:3])
    counts = ", ".join(f"{n} {lvl}" for lvl, n in levels.items())
    return f"gateway log {gateway.log_file}: {counts} ({shown})"


async def _bench(args: argparse.Namespace, gateway: GatewayProcess, run: str) -> list[str]:
    assert gateway.proc is not None
    pid, url = gateway.proc.pid, gateway.url
    deliveries = Deliveries()
    sockets: list[Live] = []
    # Idle keep-alive connections go before the gateway's HEADER_TIMEOUT (10 s) closes them.
    http_connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=5)
    ws_connector = aiohttp.TCPConnector(limit=0)  # every stream holds its connection
    async with (
        aiohttp.ClientSession(connector=http_connector) as http,
        aiohttp.ClientSession(connector=ws_connector) as ws_http,
    ):
        try:
            return await _measure(args, http, ws_http, url, pid, run, deliveries, sockets)
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(60):
                    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


async def _measure(
    args: argparse.Namespace,
    http: aiohttp.ClientSession,
    ws_http: aiohttp.ClientSession,
    url: str,
    pid: int,
    run: str,
    deliveries: Deliveries,
    sockets: list[Live],
) -> list[str]:
    async def sign_up(i: int) -> Account:
        body = {"username": f"lb{run}{i:06d}", "password": PASSWORD, "passwordConfirm": PASSWORD}
        async with http.post(f"{url}/v1/auth/sign-up", json={**body, "gender": "f"}) as resp:
            if resp.status != 201:
                raise RuntimeError(f"sign-up {resp.status}: {await resp.text()}")
            token = await resp.json()
        return Account(token["userId"], token["token"])

    _say(f"signing up {args.sockets} users")
    accounts = await bounded(range(args.sockets), sign_up, SETUP_CONCURRENCY)

    async def create_chat(k: int) -> tuple[Account, Account, str]:
        a, b = accounts[2 * k], accounts[2 * k + 1]
        async with http.post(
            f"{url}/v1/chats", json={"users": [a.uid, b.uid]}, headers=a.headers
        ) as resp:
            if resp.status != 201:
                raise RuntimeError(f"chat {resp.status}: {await resp.text()}")
            return a, b, (await resp.json())["id"]

    _say(f"creating {args.sockets // 2} chats")
    chats = await bounded(range(args.sockets // 2), create_chat, SETUP_CONCURRENCY)

    _say(f"opening {args.sockets} streams")
    open_seconds, failures = await _open_many(ws_http, url, accounts, sockets, deliveries.seen)
    if failures:
        raise RuntimeError(f"{len(failures)} streams did not get ready: {failures[0]!r}")
    _say(f"{args.sockets} streams ready in {open_seconds:.1f} s; posting")

    # --- 1. push latency under steady load --------------------------------------------
    total = round(args.rate * args.seconds)
    post_seconds: list[float] = []  # of the posts answered 202 (a refusal is often fast)
    post_status: Counter[str] = Counter()  # every answer: status, or the exception's name
    lag = LoopLag(0.01, keep=True)  # the clients' own delay

    async def post(i: int) -> None:
        a, b, cid = chats[i % len(chats)]
        sender, receiver = (a, b) if (i // len(chats)) % 2 == 0 else (b, a)
        tag = f"lb-{run}-{i}"
        started = time.perf_counter()
        deliveries.sent[tag] = (started, receiver.uid)
        try:
            async with http.post(
                f"{url}/v1/chats/{cid}/messages", json={"txt": tag}, headers=sender.headers
            ) as resp:
                await resp.read()
                status = str(resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = type(exc).__name__
        post_status[status] += 1
        if status == "202":
            post_seconds.append(time.perf_counter() - started)
            deliveries.accepted.add(tag)

    lag.start()
    posts: list[asyncio.Task[None]] = []
    slips: list[float] = []
    start = time.perf_counter() + 0.1
    for i in range(total):
        due = start + i / args.rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        slips.append(time.perf_counter() - due)
        posts.append(asyncio.create_task(post(i)))
    await asyncio.gather(*posts)
    posting_took = time.perf_counter() - start
    await deliveries.drain(args.drain)
    await lag.stop()
    closed = [s.close_code for s in sockets if not s.open_now]

    accepted = len(deliveries.accepted)
    got = [deliveries.latency[t] for t in deliveries.accepted if t in deliveries.latency]
    figures = [
        f"live bench: {args.sockets} sockets, {args.rate:g} msg/s for {args.seconds:g} s "
        f"({total} posts over {len(chats)} chats in {posting_took:.1f} s)"
    ]
    if got:
        figures.append(
            f"  push latency (POST sent -> other member's frame): p50 {_ms(percentile(got, 0.5))}"
            f"  p99 {_ms(percentile(got, 0.99))}  max {_ms(max(got))}"
            f"  (received {len(got)}/{accepted}, lost {accepted - len(got)},"
            f" duplicates {deliveries.duplicates})"
        )
    else:
        figures.append(f"  push latency: nothing received of {accepted} accepted posts")
    others = ", ".join(f"{s}: {n}" for s, n in sorted(post_status.items()) if s != "202")
    if post_seconds:
        figures.append(
            f"  POST -> 202: p50 {_ms(percentile(post_seconds, 0.5))}"
            f"  p99 {_ms(percentile(post_seconds, 0.99))}  max {_ms(max(post_seconds))}"
            f"  ({len(post_seconds)} of {total} posts; other answers: {others or 'none'})"
        )
    else:
        figures.append(f"  POST -> 202: none of {total} posts (answers: {others})")
    figures.append(
        f"  client: loop lag p99 {_ms(percentile(lag.lags, 0.99))} max {_ms(max(lag.lags))};"
        f" post start slip max {_ms(max(slips))}; streams opened in {open_seconds:.1f} s;"
        f" closed by the gateway meanwhile {len(closed)}"
        + (f" (codes {dict(Counter(closed))})" if closed else "")
    )

    # --- 2. memory per idle socket ----------------------------------------------------
    _say("posting done; reading the gateway's RSS")
    before_kb, before_settled = await _settled_rss(pid)
    gauge_before = await _gauge(http, url)
    idle_accounts = [accounts[j % len(accounts)] for j in range(args.idle)]
    _say(f"opening {args.idle} idle streams")
    opened = len(sockets)
    idle_seconds, idle_failures = await _open_many(
        ws_http, url, idle_accounts, sockets, deliveries.seen
    )
    ready_idle = sum(1 for s in sockets[opened:] if s.is_ready)
    _say(f"{ready_idle} idle streams ready in {idle_seconds:.1f} s; letting the gateway settle")
    after_kb, after_settled = await _settled_rss(pid)
    gauge_after = await _gauge(http, url)
    per_socket = (after_kb - before_kb) / ready_idle if ready_idle else float("nan")
    unsettled = "" if before_settled and after_settled else " (RSS still moving)"
    figures.append(
        f"  idle sockets: {ready_idle} more ({len(idle_failures)} failed, opened at"
        f" {args.idle / idle_seconds:.0f}/s), gateway RSS {before_kb / 1024:.1f} MB ->"
        f" {after_kb / 1024:.1f} MB: {per_socket:.1f} KB per socket{unsettled}"
        f" (gauge says {gauge_before:g} -> {gauge_after:g} open)"
    )
    if idle_failures:
        figures.append(f"  first idle failure: {idle_failures[0]!r}")
    return figures


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; refused (exit 2, with the reason) when it would post nothing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sockets", type=number(int, 2), default=1000, help="users, one stream each"
    )
    parser.add_argument(
        "--idle", type=number(int, 0), default=5000, help="idle streams opened after"
    )
    parser.add_argument(
        "--rate", type=number(float, 0, above=True), default=50, help="messages posted per second"
    )
    parser.add_argument(
        "--seconds", type=number(float, 0, above=True), default=30, help="seconds of posting"
    )
    parser.add_argument(
        "--drain", type=number(float, 0), default=15, help="seconds to wait for stragglers"
    )
    args = parser.parse_args(argv)
    total = args.rate * args.seconds
    if not math.isfinite(total) or round(total) < 1:
        parser.error(
            f"--rate x --seconds must come to at least one post, got {args.rate:g} x"
            f" {args.seconds:g} = {total:g}"
        )
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
