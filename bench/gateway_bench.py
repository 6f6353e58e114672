"""Gateway benchmark: reads through the gateway vs the same reads straight to one worker,
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
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import aiomysql

from infra.local import LocalSettings
from infra.processes.gateway import GatewayProcess, gateway_env
from infra.processes.private import private_consul
from infra.processes.worker import WorkerProcess


async def _drive(
    count: int, concurrency: int, call: Callable[[], Awaitable[int]]
) -> tuple[float, list[float], int]:
    """Run `count` calls over `concurrency` loops; (seconds, latencies, non-2xx count)."""
    latencies: list[float] = []
    errors = 0
    todo = iter(range(count))

    async def loop() -> None:
        nonlocal errors
        for _ in todo:
            started = time.perf_counter()
            status = await call()
            latencies.append(time.perf_counter() - started)
            errors += status >= 300

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, errors


def _line(label: str, seconds: float, latencies: list[float], errors: int) -> str:
    q = statistics.quantiles(latencies, n=100)
    return (
        f"{label:<26} {len(latencies) / seconds:8.0f} req/s   p50 {q[49] * 1000:6.2f} ms"
        f"   p99 {q[98] * 1000:7.2f} ms   non-2xx {errors}"
    )


async def main(args: argparse.Namespace) -> None:
    infra = LocalSettings.from_env()
    run = uuid.uuid4().hex[:8]
    counter = iter(range(1, 1000))

    def unique(prefix: str) -> str:
        return f"{prefix}-{run}-{next(counter)}"

    database = f"gw_bench_{run}"
    conn = await aiomysql.connect(
        host=infra.host, port=infra.mysql_port, user=infra.mysql_user, password=infra.mysql_password
    )
    async with conn.cursor() as cur:
        await cur.execute(f"CREATE DATABASE `{database}`")
    tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    with private_consul(tmp, infra.cache_dir) as consul:
        consul_url = consul.settings.consul_url
        first = WorkerProcess.for_test(infra, unique, consul_url=consul_url)
        workers = [first, first.sibling(unique("worker"))]
        gateway = GatewayProcess(gateway_env(infra, database, first, consul_url))
        try:
            for worker in workers:
                worker.start()
            await asyncio.gather(*(w.wait_ready(90) for w in workers))
            await gateway.start().wait_ready()
            await _bench(args, gateway, first)
        finally:
            await gateway.stop()
            await asyncio.gather(*(w.terminate() for w in workers), return_exceptions=True)
            async with conn.cursor() as cur:
                await cur.execute(f"DROP DATABASE `{database}`")
            conn.close()


async def _bench(args: argparse.Namespace, gateway: GatewayProcess, worker: WorkerProcess) -> None:
    connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
    async with aiohttp.ClientSession(connector=connector) as http:
        users = []
        for name in ("benchalice", "benchbob01"):
            form = {"username": name, "password": "secret1", "passwordConfirm": "secret1"}
            async with http.post(
                f"{gateway.url}/v1/auth/sign-up", json={**form, "gender": "f"}
            ) as resp:
                users.append(await resp.json())
        bearer = {"Authorization": f"Bearer {users[0]['token']}"}
        async with http.post(
            f"{gateway.url}/v1/chats", json={"users": [u["userId"] for u in users]}, headers=bearer
        ) as resp:
            cid = (await resp.json())["id"]
        post_url = f"{gateway.url}/v1/chats/{cid}/messages"

        async def post() -> int:
            async with http.post(post_url, json={"txt": "benchmark"}, headers=bearer) as resp:
                await resp.read()
                return resp.status

        print(f"chat {cid}; posting", file=sys.stderr, flush=True)
        await _drive(50, args.concurrency, post)  # warm-up: membership cache, producer
        seconds, latencies, errors = await _drive(args.posts, args.concurrency, post)
        post_line = _line("POST -> 202 (gateway)", seconds, latencies, errors)

        via_gateway = f"{gateway.url}/v1/chats/{cid}/messages?limit=50"
        direct = f"{worker.base_url}/messages"
        direct_params = {"uid": str(users[0]["userId"]), "cid": cid, "limit": "50"}
        print("posted; waiting for the page", file=sys.stderr, flush=True)
        while True:  # every posted message persisted, so both paths read the same page
            async with http.get(via_gateway, headers=bearer) as resp:
                if len((await resp.json())["data"]) == 50:
                    break
            await asyncio.sleep(0.2)

        async def read_gateway() -> int:
            async with http.get(via_gateway, headers=bearer) as resp:
                await resp.read()
                return resp.status

        async def read_direct() -> int:
            async with http.get(direct, params=direct_params, headers=worker.headers) as resp:
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
                posted = (await resp.json())["id"]
            while True:
                async with http.get(newest, headers=bearer) as resp:
                    page = (await resp.json())["data"]
                if page and page[0]["id"] == posted:
                    break
                await asyncio.sleep(0.002)
            lags.append(time.perf_counter() - started)

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(f"concurrency {args.concurrency}, page of 50 messages, {args.rounds} rounds each")
    totals = {}
    for name, runs in results.items():
        seconds = sum(r[0] for r in runs)
        latencies = [x for r in runs for x in r[1]]
        errors = sum(r[2] for r in runs)
        totals[name] = len(latencies) / seconds
        label = "GET messages via gateway" if name == "gateway" else "GET messages direct (1 w.)"
        print(_line(label, seconds, latencies, errors))
    print(f"gateway / direct read throughput: {totals['gateway'] / totals['direct']:.2f}")
    print(post_line)
    lags.sort()
    print(
        f"POST -> readable (gateway)  p50 {lags[len(lags) // 2] * 1000:.0f} ms, "
        f"p99 {lags[min(len(lags) - 1, round(0.99 * (len(lags) - 1)))] * 1000:.0f} ms, "
        f"max {lags[-1] * 1000:.0f} ms ({len(lags)} messages)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=400, help="reads per path per round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per path")
    parser.add_argument("--posts", type=int, default=500, help="messages posted")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight")
    parser.add_argument("--lag-samples", type=int, default=100, help="POST -> readable samples")
    asyncio.run(main(parser.parse_args()))
