"""Load driver and invariant checks for the fault-injection suite (tests/faults).

    async with Platform.start(infra, unique, consul_url=...) as platform:
        load = await Load.prepare(platform, clients=4)
        async with load.running(), ConsulMonitor(platform) as monitor:
            ...inject the fault...
        report = await check_written(platform, load)    # invariant W
        load.read_violations(monitor)                    # invariant R

Traffic goes only to 127.0.0.1; every loop is bounded in time and in count.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from bson import ObjectId
from pymongo import AsyncMongoClient

from infra.local import LocalSettings, Stack
from infra.processes.gateway import GatewayProcess, gateway_env, mysql_execute
from infra.processes.worker import WorkerProcess
from tests.support.waiting import WITHIN, NeverHappened, eventually, hold

REPO = Path(__file__).resolve().parents[2]
#: FAULTS_SCALE=3 (make faults) runs every phase three times longer.
SCALE = max(1.0, float(os.environ.get("FAULTS_SCALE", "1")))
HEARTBEAT_TTL = 3.0
#: How late Consul may learn that a worker cannot serve: its next heartbeat (TTL/3),
#: the probe's MongoDB ping timeout (2 s), plus a monitor sample.
CONSUL_LAG = HEARTBEAT_TTL / 3 + 2.0 + 0.5
#: How late the gateway may learn that Consul lists a worker again: the blocking query
#: returns, the set is swapped in (DESIGN: "well under a second"), plus a monitor sample.
WATCH_LAG = 0.5
#: How often the ConsulMonitor samples.
SAMPLE_EVERY = 0.1
#: A request of the load that got no answer within this long counts as "timeout" (an
#: unclear answer, which fails every scenario): a generous bound on "answers, never hangs".
REQUEST_TIMEOUT = 20.0
PASSWORD = "secret1"


def phase(seconds: float) -> float:
    """The length of one traffic phase, scaled by FAULTS_SCALE."""
    return seconds * SCALE


@dataclass(frozen=True)
class Outage:
    """When a service was killed, when its process was gone, when its restart began, and
    when it answered again."""

    killed: float
    gone: float
    restarting: float
    restored: float


async def outage(stack: Stack, service: str, seconds: float) -> Outage:
    """SIGKILL a private service, leave it down for `seconds`, start it again and wait for it."""
    killed = time.monotonic()
    stack.kill(service)  # returns once the process is gone
    gone = time.monotonic()
    await hold(seconds)
    restarting = time.monotonic()
    await asyncio.to_thread(stack.up, [service])
    return Outage(killed, gone, restarting, time.monotonic())


def back(attempts: list[Attempt], since: float, ok: set[str]) -> bool:
    """Some attempt started after `since` succeeded (one client's way through is open)."""
    return any(a.started > since and a.code in ok for a in attempts)


def relapses(attempts: list[Attempt], since: float, ok: set[str]) -> list[Attempt]:
    """One client's failures after its first success started after `since`: once through
    again, it must stay through. `attempts` are one client's, in the order it made them."""
    later = [a for a in attempts if a.started > since]
    first = next((i for i, a in enumerate(later) if a.code in ok), len(later))
    return [a for a in later[first:] if a.code not in ok]


#: For scenarios that kill workers again and again: a partition faust stopped handing
#: over is rewound after 10 s instead of 30 (docs/worker.md), well within
#: check_written's wait. Not for scenarios with a Kafka outage: a partition that cannot
#: move for 10 s makes its worker unhealthy in Consul, and reads would answer 5030.
QUICK_REWIND = {"STALL_AFTER": "10"}


@dataclass
class Platform:
    """Two (or more) real workers and one gateway, on a service name of their own."""

    infra: LocalSettings
    workers: list[WorkerProcess]
    gateway: GatewayProcess
    consul_url: str
    service: str
    mongo_url: str

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        infra: LocalSettings,
        unique: Callable[[str], str],
        *,
        consul_url: str,
        kafka_bootstrap: str | None = None,
        mongo_url: str | None = None,
        mysql: LocalSettings | None = None,
        workers: int = 2,
        gateway_overrides: dict[str, str] | None = None,
        worker_env: dict[str, str] | None = None,
    ) -> AsyncIterator[Platform]:
        service = unique("faults")
        bootstrap = kafka_bootstrap or infra.kafka_bootstrap
        mongo = mongo_url or infra.mongo_url
        env = {
            "WORKER_SERVICE": service,
            "HEARTBEAT_TTL": str(HEARTBEAT_TTL),
            "MONGO_TIMEOUT": "3",
            "RETRY_BACKOFF_MAX": "1",
            "LOG_LEVEL": "INFO",
            **(worker_env or {}),
        }
        first = WorkerProcess.for_test(
            infra,
            unique,
            consul_url=consul_url,
            kafka_bootstrap=bootstrap,
            mongo_url=mongo,
            env=env,
        )
        pool = [first] + [first.sibling(unique("worker")) for _ in range(workers - 1)]
        users = mysql or infra
        database = f"faults_{service.replace('-', '_')}"
        await mysql_execute(users, f"CREATE DATABASE `{database}`")
        gateway: GatewayProcess | None = None
        try:
            for worker in pool:
                worker.start()
            await asyncio.gather(*(w.wait_ready(90) for w in pool))
            genv = gateway_env(users, database, first, consul_url)
            genv |= {"KAFKA_BOOTSTRAP": bootstrap, "WORKER_SERVICE": service}
            genv |= gateway_overrides or {}
            gateway = GatewayProcess(genv).start()
            await gateway.wait_ready(90)  # stopped below even when it never gets ready
            yield cls(infra, pool, gateway, consul_url, service, mongo)
        finally:
            if gateway is not None:
                await gateway.stop()
            await asyncio.gather(*(w.terminate() for w in pool), return_exceptions=True)
            for worker in pool:
                worker.kill()
            with contextlib.suppress(Exception):  # the user store may be the killed one
                await asyncio.wait_for(mysql_execute(users, f"DROP DATABASE `{database}`"), 10)

    async def passing(self, http: aiohttp.ClientSession) -> int:
        """How many instances of our service Consul lists as passing (-1: Consul down)."""
        url = f"{self.consul_url}/v1/health/service/{self.service}?passing"
        try:
            # 5 s: a loaded test loop can take a second to read the answer of a live Consul
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                return len(await resp.json()) if resp.status == 200 else -1
        except (aiohttp.ClientError, TimeoutError):
            return -1

    async def wait_passing(self, count: int, within: float = WITHIN) -> None:
        """Wait (bounded) until Consul lists `count` passing instances."""
        async with aiohttp.ClientSession() as http:
            await eventually(
                lambda: self.passing(http),
                lambda passing: passing == count,
                within=within,
                what=f"{count} passing instances",
            )


@dataclass(frozen=True)
class Sample:
    """How many workers Consul listed as passing at some moment between `asked` and
    `answered` (a loaded machine can take a second or more to answer)."""

    asked: float
    answered: float
    passing: int


class ConsulMonitor:
    """Samples how many workers Consul lists as passing, every SAMPLE_EVERY seconds."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.samples: list[Sample] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ConsulMonitor:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                asked = time.monotonic()
                passing = await self.platform.passing(http)
                self.samples.append(Sample(asked, time.monotonic(), passing))
                await hold(SAMPLE_EVERY)  # the sampling rhythm

    def after(self, moment: float) -> list[int]:
        """What the samples asked after `moment` saw."""
        return [s.passing for s in self.samples if s.asked > moment]

    def within(self, start: float, end: float) -> list[int]:
        """What the samples asked after `start` and answered before `end` saw."""
        return [s.passing for s in self.samples if s.asked > start and s.answered < end]

    def none_passing_between(self, start: float, end: float) -> bool:
        """Some sample that may have seen [start - WATCH_LAG, end + CONSUL_LAG] saw no
        passing worker: a sample's answer describes a moment between its question and its
        answer, so one that overlaps the window counts."""
        low, high = start - WATCH_LAG, end + CONSUL_LAG
        return any(s.passing <= 0 and s.answered >= low and s.asked <= high for s in self.samples)


@dataclass
class Attempt:
    kind: str  # "post" or "read"
    started: float
    ended: float
    code: str  # "202", "200", an error code, or "conn"/"timeout"/"unparsed"


@dataclass
class Client:
    token: str
    cid: str  # the chat it reads, and the first it posts to
    name: str
    attempts: list[Attempt] = field(default_factory=list)
    more: list[str] = field(default_factory=list)  # further chats it posts to in turn
    acked: dict[str, str] = field(default_factory=dict)  # message id -> text
    max_gap: float = 0.0


@dataclass
class Load:
    """Several concurrent clients, each posting to and reading its own chat."""

    platform: Platform
    http: aiohttp.ClientSession
    clients: list[Client]
    pause: float = 0.02
    error_pause: float = 0.2  # a client that got an error waits a little, as real ones do
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def prepare(
        cls, platform: Platform, http: aiohttp.ClientSession, clients: int = 4, chats: int = 1
    ) -> Load:
        """Sign up clients + 1 users and make `chats` chats per client with the last user."""
        url = platform.gateway.url
        tokens = []
        for i in range(clients + 1):
            name = f"f{platform.service[-10:].replace('-', '')}{i}"
            body = {"username": name, "password": PASSWORD, "passwordConfirm": PASSWORD}
            async with http.post(f"{url}/v1/auth/sign-up", json={**body, "gender": "f"}) as r:
                assert r.status == 201, await r.text()
                tokens.append(await r.json())
        partner = tokens[-1]
        made = []
        for i, user in enumerate(tokens[:-1]):
            users = {"users": [user["userId"], partner["userId"]]}
            headers = {"Authorization": f"Bearer {user['token']}"}
            cids = []
            for _ in range(chats):
                async with http.post(f"{url}/v1/chats", json=users, headers=headers) as r:
                    assert r.status == 201, await r.text()
                    cids.append((await r.json())["id"])
            made.append(Client(user["token"], cids[0], f"c{i}", more=cids[1:]))
        return cls(platform, http, made)

    async def _call(self, client: Client, kind: str, method: str, path: str, **kw: Any) -> Any:
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {client.token}"}
        body: Any = None
        try:
            async with self.http.request(
                method,
                self.platform.gateway.url + path,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
                **kw,
            ) as resp:
                body = await resp.json(content_type=None)
                ok = resp.status in (200, 202)
                code = str(resp.status) if ok else str(body.get("code", "unparsed"))
        except aiohttp.ClientError:
            code = "conn"
        except TimeoutError:
            code = "timeout"
        except ValueError:
            code = "unparsed"
        client.attempts.append(Attempt(kind, started, time.monotonic(), code))
        return body if code in ("200", "202") else None

    async def _client(self, client: Client, until: float) -> str | None:
        """Post and read until stopped (None), or say why it ended before that."""
        last_read = time.monotonic()
        path = f"/v1/chats/{client.cid}/messages"
        chats = [client.cid, *client.more]
        seq = -1
        while not self._stop.is_set():
            seq += 1
            if time.monotonic() > until:
                return "ran out of time"
            text = f"{client.name}-{seq}"
            post_to = f"/v1/chats/{chats[seq % len(chats)]}/messages"
            answer = await self._call(client, "post", "POST", post_to, json={"txt": text})
            if answer is not None:
                client.acked[answer["id"]] = text
            read = await self._call(client, "read", "GET", f"{path}?limit=20")
            now = time.monotonic()
            client.max_gap = max(client.max_gap, now - last_read)
            if read is not None:
                last_read = now
            failed = answer is None or read is None
            await hold(self.error_pause if failed else self.pause)  # a client's rhythm
        return None

    @contextlib.asynccontextmanager
    async def running(self, at_most: float = 900.0 * SCALE) -> AsyncIterator[Load]:
        """Traffic from every client for the duration of the block, `at_most` seconds (a
        bound against a scenario that hangs). A client that stopped before the block
        ended fails it: the phases after would have run without traffic, and their
        checks held over nothing. (A bound of 1,500 rounds per client, kept until
        2026-12-03, ended the load before the last worker kills of scenario 11.)"""
        self._stop.clear()
        until = time.monotonic() + at_most
        tasks = [asyncio.create_task(self._client(c, until)) for c in self.clients]
        try:
            yield self
        finally:
            self._stop.set()
            ended = await asyncio.gather(*tasks)
        early = [f"{c.name} {why}" for c, why in zip(self.clients, ended, strict=True) if why]
        assert not early, f"load stopped before the scenario's end: {', '.join(early)}"

    # --- figures ---------------------------------------------------------------------

    @property
    def attempts(self) -> list[Attempt]:
        return [a for c in self.clients for a in c.attempts]

    @property
    def acked(self) -> dict[str, str]:
        return {mid: text for c in self.clients for mid, text in c.acked.items()}

    def codes(self, kind: str | None = None) -> Counter[str]:
        return Counter(a.code for a in self.attempts if kind is None or a.kind == kind)

    def unclear(self) -> list[Attempt]:
        """Requests that got no clear answer (no 2xx, no error code): never allowed."""
        return [a for a in self.attempts if a.code in ("conn", "timeout", "unparsed")]

    def of(self, client: Client, kind: str) -> list[Attempt]:
        return [a for a in client.attempts if a.kind == kind]

    def back(self, since: float, kind: str, ok: set[str]) -> bool:
        """Every client got a `kind` request through (a code in `ok`) started after `since`."""
        return all(back(self.of(c, kind), since, ok) for c in self.clients)

    def relapses(self, since: float, kind: str, ok: set[str]) -> list[Attempt]:
        """`kind` failures after a client got through again after `since` (see `relapses`)."""
        return [a for c in self.clients for a in relapses(self.of(c, kind), since, ok)]

    def failed_reads(self) -> list[Attempt]:
        return [a for a in self.attempts if a.kind == "read" and a.code != "200"]

    def read_violations(self, monitor: ConsulMonitor) -> list[Attempt]:
        """Invariant R: reads that failed while a worker was passing, or not with 5030.

        How fast a refused read answered is a figure of the summary line, not a check.
        """
        bad = []
        for a in self.failed_reads():
            outage = monitor.none_passing_between(a.started, a.ended)
            if not outage or a.code != "5030":
                bad.append(a)
        return bad

    def slowest_error(self) -> float:
        """Seconds the slowest request answered with an error code took (0.0: none)."""
        failed = [a for a in self.attempts if a.code not in ("200", "202")]
        return max((a.ended - a.started for a in failed), default=0.0)


@dataclass
class Written:
    acked: int
    persisted: int
    missing: list[str]
    duplicates: int
    #: When something is missing: DLQ reasons, group offsets, worker warnings (for CI logs).
    diagnosis: str = ""

    def __repr__(self) -> str:
        shown = self.missing[:5] + (["..."] if len(self.missing) > 5 else [])
        return (
            f"Written(acked={self.acked}, persisted={self.persisted}, "
            f"missing={len(self.missing)} {shown}, duplicates={self.duplicates})"
            + (f"\n{self.diagnosis}" if self.diagnosis else "")
        )


async def check_written(platform: Platform, load: Load, within: float = WITHIN) -> Written:
    """Invariant W, read straight from MongoDB once the workers caught up (bounded wait)."""
    acked = load.acked
    wanted = [ObjectId(mid) for mid in acked]
    docs: list[dict[str, Any]] = []
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(platform.mongo_url, timeoutMS=10000)
    try:
        messages = client[platform.workers[0].mongo_db]["history"]

        async def stored() -> set[str]:
            docs[:] = await messages.find({}, {"id": 1, "text": 1}).to_list(None)
            return {str(d["id"]) for d in docs}

        with contextlib.suppress(NeverHappened):  # the report says what is missing
            await eventually(stored, lambda ids: set(acked) <= ids, within=within, every=0.5)
    finally:
        await client.close()
    ids = Counter(str(d["id"]) for d in docs)
    texts = Counter(str(d.get("text")) for d in docs)
    duplicates = sum(n - 1 for n in ids.values() if n > 1)
    duplicates += sum(n - 1 for n in texts.values() if n > 1)  # a retry under a new id
    missing = [mid for mid in acked if ids[mid] == 0]
    diagnosis = await diagnose(platform) if missing else ""
    return Written(len(wanted), len(acked) - len(missing), missing, duplicates, diagnosis)


async def diagnose(platform: Platform) -> str:
    """What a run that lost track of messages left behind, for the failure message."""
    lines: list[str] = []
    worker = platform.workers[0]
    try:
        async with asyncio.timeout(30):
            lines += await _group_offsets(worker)
            lines += await _dead_letters(worker)
    except Exception as exc:  # a diagnosis must not hide the failure it explains
        lines.append(f"diagnosis incomplete: {exc!r}")
    for w in platform.workers:
        if w.log_file is not None and w.log_file.exists():
            noted = [
                line
                for line in w.log_file.read_text(errors="replace").splitlines()
                if '"level":"warning"' in line or '"level":"error"' in line  # JSON log lines
            ]
            lines.append(f"{w.service_id} warnings ({len(noted)}), last 15:")
            lines += [f"  {line[:300]}" for line in noted[-15:]]
    return "\n".join(lines)


async def _group_offsets(worker: WorkerProcess) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=worker.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=worker.kafka_bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(worker.app_id)
        tps = [TopicPartition(worker.topic, p) for p in range(worker.partitions)]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
        await admin.close()
    return [
        f"partition {tp.partition}: committed {getattr(committed.get(tp), 'offset', None)} "
        f"end {ends[tp]}"
        for tp in tps
    ]


async def _dead_letters(worker: WorkerProcess) -> list[str]:
    consumer = AIOKafkaConsumer(
        worker.dlq_topic,
        bootstrap_servers=worker.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    reasons: Counter[str] = Counter()
    try:
        parts = consumer.partitions_for_topic(worker.dlq_topic) or set()
        tps = [TopicPartition(worker.dlq_topic, p) for p in parts]
        ends = await consumer.end_offsets(tps) if tps else {}
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    headers = dict(r.headers)
                    reasons[headers.get("x-dlq-reason", b"?").decode(errors="replace")[:80]] += 1
    finally:
        await consumer.stop()
    return [f"dead letters: {sum(reasons.values())}"] + [
        f"  {n} x {reason}" for reason, n in reasons.most_common(5)
    ]


def summary(scenario: str, load: Load, written: Written, extra: str = "") -> str:
    """The one-line report of a scenario (see `report`)."""
    errors = {k: v for k, v in sorted(load.codes().items()) if k not in ("200", "202")}
    gap = max((c.max_gap for c in load.clients), default=0.0)
    line = (
        f"faults {scenario}: sent={len(load.attempts)} 202={load.codes()['202']} "
        f"errors={errors or '{}'} persisted={written.persisted}/{written.acked} "
        f"duplicates={written.duplicates} max_read_gap_ms={gap * 1000:.0f} "
        f"slowest_error_ms={load.slowest_error() * 1000:.0f}" + (f" {extra}" if extra else "")
    )
    report(line)
    return line


def report(line: str) -> None:
    """Print a summary line and append it to $FAULTS_REPORT when set."""
    print(line)
    target = os.environ.get("FAULTS_REPORT")
    if target:
        path = REPO / target
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            out.write(line + "\n")
