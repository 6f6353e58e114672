"""Gateway benchmark: reads through the gateway vs the same reads straight to its two
workers (round robin, so both paths have the same workers behind them),
POST-to-202 throughput, and how long a posted message takes to be readable through the
gateway (one POST at a time, then GETs until it is the newest). Prints its figures;
asserts nothing.

    .venv/bin/python -m bench.gateway_bench [--reads 400] [--rounds 2] [--posts 500]

Needs the local infrastructure running (`python -m infra.local up`). It starts a private
Consul agent, two workers and `python -m gateway`, exactly as the end-to-end tests do.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from bench._common import StallWatch, number, percentile, private_platform
from infra.local import LocalSettings
from infra.processes.gateway import GatewayProcess
from infra.processes.worker import WorkerProcess

PAGE = 50
#: Seconds one posted message may take to become the newest readable one.
READABLE_WITHIN = 30.0


async def _drive(
    count: int, concurrency: int, call: Callable[[], Awaitable[int]]
) -> tuple[float, list[float], int]:
    """Run `count` calls over `concurrency` loops; (seconds, latencies of the 2xx answers,
    count of the others). A refusal is often fast: timed with the rest, it would make the
    figures of the successful calls look better than they were."""
    latencies: list[float] = []
    failed = 0
    todo = iter(range(count))

    async def loop() -> None:
        nonlocal failed
        for _ in todo:
            started = time.perf_counter()
            status = await call()
            if 200 <= status < 300:
                latencies.append(time.perf_counter() - started)
            else:
                failed += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, failed


def _line(label: str, seconds: float, latencies: list[float], failed: int) -> str:
    """Throughput and latency of the 2xx answers; the others are counted after them."""
    if not latencies:
        return f"{label:<26} no 2xx answer   non-2xx {failed}"
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    return (
        f"{label:<26} {len(latencies) / seconds:8.0f} 2xx/s   p50 {p50 * 1000:6.2f} ms"
        f"   p99 {p99 * 1000:7.2f} ms   non-2xx {failed}"
    )


async def _answer(resp: aiohttp.ClientResponse, expected: int, what: str) -> Any:
    """The decoded body of an answer that must have status `expected` (else a readable error)."""
    if resp.status != expected:
        raise RuntimeError(f"{what} answered {resp.status}: {await resp.text()}")
    return await resp.json()


async def main(args: argparse.Namespace) -> None:
    async with private_platform(LocalSettings.from_env(), "bench") as platform:
        await _bench(args, platform.gateway, platform.workers)


async def _bench(
    args: argparse.Namespace, gateway: GatewayProcess, workers: Sequence[WorkerProcess]
) -> None:
    connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as http:
        users = []
        for name in ("benchalice", "benchbob01"):
            form = {"username": name, "password": "secret1", "passwordConfirm": "secret1"}
            async with http.post(
                f"{gateway.url}/v1/auth/sign-up", json={**form, "gender": "f"}
            ) as resp:
                users.append(await _answer(resp, 201, f"sign-up of {name}"))
        bearer = {"Authorization": f"Bearer {users[0]['token']}"}
        async with http.post(
            f"{gateway.url}/v1/chats", json={"users": [u["userId"] for u in users]}, headers=bearer
        ) as resp:
            cid = (await _answer(resp, 201, "POST /v1/chats"))["id"]
        post_url = f"{gateway.url}/v1/chats/{cid}/messages"

        async def post() -> int:
            async with http.post(post_url, json={"txt": "benchmark"}, headers=bearer) as resp:
                await resp.read()
                return resp.status

        print(f"chat {cid}; posting", file=sys.stderr, flush=True)
        await _drive(50, args.concurrency, post)  # warm-up: membership cache, producer
        seconds, latencies, failed = await _drive(args.posts, args.concurrency, post)
        post_line = _line("POST -> 202 (gateway)", seconds, latencies, failed)

        via_gateway = f"{gateway.url}/v1/chats/{cid}/messages?limit={PAGE}"
        direct = itertools.cycle([(f"{w.base_url}/messages", w.headers) for w in workers])
        direct_params = {"uid": str(users[0]["userId"]), "cid": cid, "limit": str(PAGE)}
        print("posted; waiting for the page", file=sys.stderr, flush=True)
        watch = StallWatch(f"messages of the first page ({via_gateway})", PAGE)
        while True:  # a full page persisted, so both paths read the same page
            async with http.get(via_gateway, headers=bearer) as resp:
                stored = len((await _answer(resp, 200, "GET messages"))["data"])
            if stored == PAGE:
                break
            watch.check(stored)
            await asyncio.sleep(0.2)

        async def read_gateway() -> int:
            async with http.get(via_gateway, headers=bearer) as resp:
                await resp.read()
                return resp.status

        async def read_direct() -> int:
            url, headers = next(direct)
            async with http.get(url, params=direct_params, headers=headers) as resp:
                await resp.read()
                return resp.status

        await _drive(200, args.concurrency, read_gateway)
        await _drive(200, args.concurrency, read_direct)
        results: dict[str, list[tuple[float, list[float], int]]] = {"gateway": [], "direct": []}
        for _ in range(args.rounds):  # interleaved rounds: both see the same machine load
            results["direct"].append(await _drive(args.reads, args.concurrency, read_direct))
            results["gateway"].append(await _drive(args.reads, args.concurrency, read_gateway))

        newest = f"{gateway.url}/v1/chats/{cid}/messages?limit=1"
        lags: list[float] = []
        for i in range(args.lag_samples):
            started = time.perf_counter()
            async with http.post(post_url, json={"txt": f"lag {i}"}, headers=bearer) as resp:
                posted = (await _answer(resp, 202, f"POST lag {i}"))["id"]
            while True:
                async with http.get(newest, headers=bearer) as resp:
                    page = (await _answer(resp, 200, "GET newest message"))["data"]
                if page and page[0]["id"] == posted:
                    break
                if time.perf_counter() - started > READABLE_WITHIN:
                    raise RuntimeError(
                        f"lag sample {i + 1} of {args.lag_samples}: message {posted} not the "
                        f"newest after {READABLE_WITHIN:g} s (newest: {page[:1]})"
                    )
                await asyncio.sleep(0.002)
            lags.append(time.perf_counter() - started)

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"concurrency {args.concurrency}, page of {PAGE} messages, {args.rounds} rounds each")
    totals = {}
    for name, runs in results.items():
        seconds = sum(r[0] for r in runs)
        latencies = [x for r in runs for x in r[1]]
        failed = sum(r[2] for r in runs)
        totals[name] = len(latencies) / seconds
        label = "GET messages via gateway" if name == "gateway" else "GET messages direct (2 w.)"
        print(_line(label, seconds, latencies, failed))
    if totals["direct"]:
        print(f"gateway / direct read throughput: {totals['gateway'] / totals['direct']:.2f}")
    print(post_line)
    print(
        f"POST -> readable (gateway)  p50 {percentile(lags, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(lags, 0.99) * 1000:.0f} ms, "
        f"max {max(lags) * 1000:.0f} ms ({len(lags)} messages)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reads", type=number(int, 1), default=400, help="reads per path per round"
    )
    parser.add_argument(
        "--rounds", type=number(int, 1), default=2, help="interleaved rounds per path"
    )
    parser.add_argument("--posts", type=number(int, 1), default=500, help="messages posted")
    parser.add_argument("--concurrency", type=number(int, 1), default=16, help="requests in flight")
    parser.add_argument(
        "--lag-samples", type=number(int, 1), default=100, help="POST -> readable samples"
    )
    asyncio.run(main(parser.parse_args()))
