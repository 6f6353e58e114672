"""Discovery benchmark: real Consul, real stub workers (child processes), this machine.

    .venv/bin/python -m bench.discovery_bench [--consul URL] [--trials N]

With two and three instances it measures
  (a) registration -> first request routed to the new instance; passing in Consul ->
      listed by the watch; graceful stop (SIGTERM: it deregisters) -> gone from the watch,
  (b) after SIGKILL of one instance under steady load: failed caller requests,
      time to stop routing to it, attempts it got after the kill,
  (c) the balancer's overhead per request versus calling the instance directly.
It prints the figures; it asserts nothing.

(a) starts when the new worker calls Registrar.start() (which checks for a
duplicate id, registers, runs the health probe and passes the TTL check) and
ends when the first caller request is sent that the new instance answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from itertools import cycle

import aiohttp

from bench._common import loopback_consul, number, percentile
from discovery import BalancedClient, Balancer, Instance, NoInstanceAvailable, ServiceWatch
from infra.processes.stub import StubProcess

CALLERS = 4  # concurrent callers of the steady load
AFTER_KILL = 13.0  # seconds of load after the kill: past the stub's 10 s TTL


class Load:
    """Callers sending GETs back to back; remembers when each request was sent and where."""

    def __init__(self, client: BalancedClient) -> None:
        self.client = client
        self.sent: list[tuple[float, str]] = []
        self.first: dict[str, float] = {}  # instance id -> when its first request was sent
        self.failed = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._caller()) for _ in range(CALLERS)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _caller(self) -> None:
        while not self._stop.is_set():
            sent_at = time.monotonic()
            try:
                resp = await self.client.request("GET", "/messages", params={"cid": "bench"})
            except NoInstanceAvailable:
                self.failed += 1
                await asyncio.sleep(0.01)
                continue
            self.sent.append((sent_at, resp.instance_id))
            self.first.setdefault(resp.instance_id, sent_at)


async def attempts_log(
    client: BalancedClient, instance_id: str, stop: asyncio.Event
) -> list[float]:
    """Times at which the balancer routed an attempt to `instance_id` (sampled every 1 ms)."""
    seen: list[float] = []
    last = None
    while not stop.is_set():
        count = next((s.requests for s in client.stats() if s.id == instance_id), None)
        if last is not None and count is not None and count > last:
            seen.extend([time.monotonic()] * (count - last))
        last = count if count is not None else last
        await asyncio.sleep(0.001)
    return seen


class Sightings:
    """A watch subscriber: when each instance id was first listed, and last dropped."""

    def __init__(self) -> None:
        self.listed: dict[str, float] = {}
        self.dropped: dict[str, float] = {}
        self._current: set[str] = set()

    def __call__(self, instances: tuple[Instance, ...]) -> None:
        now, ids = time.monotonic(), {i.id for i in instances}
        for new in ids - self._current:
            self.listed.setdefault(new, now)
        for gone in self._current - ids:
            self.dropped[gone] = now
        self._current = ids


async def wait_for(predicate: Callable[[], bool], within: float) -> None:
    async with asyncio.timeout(within):
        while True:
            if predicate():
                return
            await asyncio.sleep(0.001)


async def start_stubs(stack: contextlib.AsyncExitStack, stubs: list[StubProcess]) -> None:
    """Start the stubs together; each is stopped when `stack` closes, even one whose start
    failed (it may have registered in Consul already)."""
    for stub in stubs:
        stack.push_async_callback(stub.stop)
    # Every start is awaited to its end before a failure is raised, so no stub is still
    # starting when the stack stops them.
    results = await asyncio.gather(*(s.start() for s in stubs), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def scenario(consul_url: str, n: int, trials: int) -> dict[str, object]:
    service = f"bench-disc-{uuid.uuid4().hex[:8]}"
    watch = ServiceWatch(consul_url, service)
    sightings = Sightings()
    watch.subscribe(sightings)
    client = BalancedClient(watch)
    routed: list[float] = []  # Registrar.start() called -> first request routed to it
    start_calls: list[float] = []  # Registrar.start() called -> returned (passing)
    after_passing: list[float] = []  # start() returned -> first request routed to it
    watched: list[float] = []  # start() returned -> listed by the watch
    left: list[float] = []  # SIGTERM (it deregisters) -> gone from the watch
    async with contextlib.AsyncExitStack() as stack:
        stubs = [StubProcess(consul_url, service) for _ in range(n - 1)]
        await start_stubs(stack, stubs)
        stack.push_async_callback(watch.stop)
        await watch.start()
        await client.start()
        stack.push_async_callback(client.stop)
        await wait_for(lambda: len(watch.instances) == n - 1, 10)
        load = Load(client)
        load.start()
        stack.push_async_callback(load.stop)

        # (a) the n-th instance joins n-1: registration -> first request routed to it.
        for trial in range(trials):
            newcomer = StubProcess(consul_url, service)
            await start_stubs(stack, [newcomer])
            event = newcomer.registered
            new_id = newcomer.id
            await wait_for(lambda: new_id in load.first, 10)  # noqa: B023 - awaited here
            registering, passing = float(event["registering_at"]), float(event["at"])
            routed.append(load.first[new_id] - registering)
            start_calls.append(passing - registering)
            after_passing.append(load.first[new_id] - passing)
            watched.append(sightings.listed[new_id] - passing)
            if trial < trials - 1:  # the last newcomer stays (stopped with the others)
                stopping = time.monotonic()
                await newcomer.stop()  # graceful: deregisters
                await wait_for(lambda: new_id in sightings.dropped, 10)  # noqa: B023
                left.append(sightings.dropped[new_id] - stopping)
        await asyncio.sleep(1.0)

        # (b) SIGKILL one instance under steady load.
        victim = stubs[0]
        stop_log = asyncio.Event()
        stack.callback(stop_log.set)
        log_task = asyncio.create_task(attempts_log(client, victim.id, stop_log))
        await asyncio.sleep(0.2)
        failed_before = load.failed  # the load's failures carry no time: counted from here
        killed_at = await victim.kill()
        dropped_at = None
        deadline = killed_at + AFTER_KILL
        while time.monotonic() < deadline:
            if dropped_at is None and victim.id not in {i.id for i in watch.instances}:
                dropped_at = time.monotonic()
            await asyncio.sleep(0.005)
        stop_log.set()
        window = time.monotonic() - killed_at
        attempts = [t - killed_at for t in await log_task if t >= killed_at]
        served_after = sum(1 for sent_at, _ in load.sent if sent_at >= killed_at)
        failed_after = load.failed - failed_before
    return {
        "routed": routed,
        "start_calls": start_calls,
        "after_passing": after_passing,
        "watched": watched,
        "left": left,
        "failed": failed_after,
        "served": served_after,
        "attempts": attempts,
        "dropped": None if dropped_at is None else dropped_at - killed_at,
        "window": window,
        "rps": served_after / window,
    }


async def overhead(consul_url: str, n: int, requests: int) -> tuple[list[float], list[float]]:
    """Sequential GET latencies: straight to the instances vs through the BalancedClient."""
    service = f"bench-disc-{uuid.uuid4().hex[:8]}"
    watch = ServiceWatch(consul_url, service)
    client = BalancedClient(watch)
    direct: list[float] = []
    balanced: list[float] = []
    async with contextlib.AsyncExitStack() as stack:
        stubs = [StubProcess(consul_url, service) for _ in range(n)]
        await start_stubs(stack, stubs)
        stack.push_async_callback(watch.stop)
        await watch.start()
        await client.start()
        stack.push_async_callback(client.stop)
        await wait_for(lambda: len(watch.instances) == n, 10)
        urls = cycle([f"http://127.0.0.1:{s.registered['port']}/messages" for s in stubs])
        async with aiohttp.ClientSession() as session:
            for rnd in range(2):  # interleave rounds so machine noise hits both alike
                for _ in range(requests // 2):
                    t0 = time.perf_counter()
                    async with session.get(next(urls), params={"cid": "bench"}) as resp:
                        await resp.read()
                    if rnd or _ >= 100:
                        direct.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    await client.request("GET", "/messages", params={"cid": "bench"})
                    if rnd or _ >= 100:
                        balanced.append(time.perf_counter() - t0)
    return direct, balanced


def balancer_cost(n: int, rounds: int = 200_000) -> float:
    """Seconds of CPU per pick() + succeeded(), the bookkeeping a balanced request adds."""
    balancer = Balancer()
    balancer.update([Instance(f"w{i}", "127.0.0.1", 8000 + i) for i in range(n)])
    t0 = time.perf_counter()
    for _ in range(rounds):
        chosen = balancer.pick()
        assert chosen is not None
        balancer.succeeded(chosen.id)
    return (time.perf_counter() - t0) / rounds


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.2f} ms"


async def main(consul_url: str, trials: int, requests: int) -> None:
    print(f"discovery benchmark against {consul_url}; {CALLERS} concurrent callers of load")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    for n in (2, 3):
        r = await scenario(consul_url, n, trials)
        routed = r["routed"]
        attempts = r["attempts"]
        assert isinstance(routed, list) and isinstance(attempts, list)
        print(f"\n== {n} instances ==")
        print(f"(a) new instance, {len(routed)} trials:")
        for label, key in (
            ("register call -> first routed request", "routed"),
            ("  of which Registrar.start() itself  ", "start_calls"),
            ("  passing -> first routed request    ", "after_passing"),
            ("passing -> listed by the watch       ", "watched"),
            ("graceful stop -> gone from the watch ", "left"),
        ):
            values = r[key]
            assert isinstance(values, list)
            if not values:  # "left" needs two trials: the last newcomer stays
                continue
            print(
                f"    {label}: min {ms(min(values))}  median {ms(statistics.median(values))}  "
                f"max {ms(max(values))}"
            )
        print(
            f"(b) SIGKILL under load ({r['rps']:.0f} req/s, {r['served']} requests sent in the "
            f"{r['window']:.1f} s after): failed caller requests {r['failed']}"
        )
        last = max(attempts) if attempts else 0.0
        late = [a for a in attempts if a > 1.0]
        print(
            f"    attempts routed to the dead instance after the kill: {len(attempts)}, "
            f"last at {ms(last)} after it (all retried on a live one)"
        )
        print(f"    attempts later than 1 s after the kill: {len(late)}")
        dropped = r["dropped"]
        print(
            "    Consul dropped it from the passing set (TTL 10 s lapsed) after "
            + ("not within the window" if dropped is None else f"{dropped:.2f} s")
        )
    for n in (2, 3):
        direct, balanced = await overhead(consul_url, n, requests)
        diff = statistics.median(balanced) - statistics.median(direct)
        print(f"\n(c) per-request cost, {n} instances, {len(direct)} sequential GETs each way:")
        print(
            f"    direct   median {ms(statistics.median(direct))}  "
            f"p99 {ms(percentile(direct, 0.99))}"
        )
        print(
            f"    balanced median {ms(statistics.median(balanced))}  "
            f"p99 {ms(percentile(balanced, 0.99))}  -> difference of medians {diff * 1e6:+.0f} µs"
        )
        print(
            f"    balancer bookkeeping alone (pick + succeeded): "
            f"{balancer_cost(n) * 1e6:.2f} µs per request"
        )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line; refused (exit 2, with the reason) when a figure would have no
    values: (c) splits --requests into two rounds, so 1 gave none and a StatisticsError."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--consul", type=loopback_consul, default="http://127.0.0.1:8500")
    parser.add_argument("--trials", type=number(int, 1), default=5)
    parser.add_argument(
        "--requests",
        type=number(int, 2),
        default=3000,
        help="sequential GETs each way in (c), in two rounds (the first round's first 100 "
        "are a warm-up)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # expected ejection warnings would drown the figures
    args = parse_args()
    asyncio.run(main(args.consul, args.trials, args.requests))
