"""Run a real dialogue worker (`python -m dialogue_worker`) as a subprocess in tests.

    worker = WorkerProcess.for_test(infra, unique)   # unique app id, topic, db, port, id
    worker.start()
    await worker.wait_ready()                        # /ping answers
    ... worker.base_url, worker.headers, worker.service_id ...
    await worker.terminate()                         # SIGTERM; returns the exit code
    worker.kill()                                    # SIGKILL, as a crash would

Stable API, also used by the gateway's end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from discovery import WORKER_META_STARTED
from infra.dev.settings import service_environment
from infra.local import LocalSettings
from infra.processes.logs import log_file
from infra.processes.private import free_port

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-entrypoint-token"


@contextlib.asynccontextmanager
async def _borrowed(session: aiohttp.ClientSession) -> AsyncIterator[aiohttp.ClientSession]:
    yield session


def metric_sum(text: str, name: str) -> float:
    """The samples named exactly `name` in a Prometheus text exposition, summed over their
    label sets (0: absent). `x_total` does not match `x_total_bytes` or `x_created`. A
    name with its labels (`x_total{source="kept"}`, as the exposition writes them) is
    that one sample."""
    total = 0.0
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample == name or sample.split("{", 1)[0] == name:
            total += float(value)
    return total


class WorkerFailed(RuntimeError):
    """The worker exited or did not answer in time; the message ends with its log."""


@dataclass
class WorkerProcess:
    """One worker subprocess; every setting is passed through its environment."""

    kafka_bootstrap: str
    mongo_url: str
    consul_url: str
    app_id: str
    topic: str
    mongo_db: str
    service_id: str
    port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    token: str = TOKEN
    partitions: int = 3
    env: Mapping[str, str] = field(default_factory=dict)
    log_file: Path | None = None
    #: The tree whose code runs (another checkout lets a benchmark compare versions).
    source: Path = REPO
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log_offset: int = field(default=0, repr=False)
    _started_after: datetime = field(default=datetime.min.replace(tzinfo=UTC), repr=False)

    @classmethod
    def for_test(
        cls, infra: LocalSettings, unique: Callable[[str], str], **overrides: object
    ) -> WorkerProcess:
        """A worker with its own app id (consumer group), topic, database, port and id."""
        name = unique("worker")
        worker = cls(
            kafka_bootstrap=infra.kafka_bootstrap,
            mongo_url=infra.mongo_url,
            consul_url=infra.consul_url,
            app_id=name,
            topic=f"{name}-messages",
            mongo_db=name.replace("-", "_"),
            service_id=name,
        )
        return replace(worker, **overrides)  # type: ignore[arg-type]

    def sibling(self, service_id: str, **overrides: object) -> WorkerProcess:
        """Another worker of the same group (topic, database), with its own id and port."""
        fresh: dict[str, Any] = {"port": free_port(), "_proc": None, "log_file": None}
        return replace(self, service_id=service_id, **(fresh | overrides))

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Entrypoint {self.token}"}

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def events_topic(self) -> str:
        """The events topic of this worker's group (its own, so tests do not share one)."""
        return f"{self.topic}.events"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def environment(self) -> dict[str, str]:
        """What the worker is started with: this object's settings only, none of the
        gateway's or worker's settings the shell exported."""
        return service_environment(
            os.environ,
            {
                "DIALOGUE_ENV": "local",
                "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "MONGO_URL": self.mongo_url,
                "MONGO_DB": self.mongo_db,
                "CONSUL_URL": self.consul_url,
                "WORKER_APP_ID": self.app_id,
                "WORKER_HOST": self.host,
                "WORKER_PORT": str(self.port),
                "SERVICE_ID": self.service_id,
                "TOPIC": self.topic,
                "EVENTS_TOPIC": self.events_topic,
                "TOPIC_PARTITIONS": str(self.partitions),
                "ENTRYPOINT_TOKEN": self.token,
                "DATA_DIR": str(Path(tempfile.gettempdir()) / "dialogue-worker-tests"),
                **self.env,
            },
        )

    def start(self) -> WorkerProcess:
        if self._proc is not None and self._proc.poll() is None:
            raise WorkerFailed(f"worker {self.service_id} is already running")
        if self.log_file is None:
            self.log_file = log_file(self.service_id)
        self._log_offset = self.log_file.stat().st_size  # a restart appends to the same log
        self._started_after = datetime.now(UTC)
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "dialogue_worker"],
                cwd=self.source,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    async def wait_ready(self, within: float = 60.0) -> WorkerProcess:
        """Wait until this process registered (it does so last) and its check passes.

        After a SIGKILL the predecessor's registration stays passing until its TTL lapses;
        a restart registers only then, so the registration must carry this start's time
        (meta `started`), or "passing" would be the dead process's.
        """
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession(headers=self.headers) as session:
            while time.monotonic() < deadline:
                if self.returncode is not None:
                    raise WorkerFailed(f"worker exited with {self.returncode}{self._tail()}")
                try:
                    async with session.get(f"{self.base_url}/ping") as resp:
                        if (
                            resp.status == 200
                            and await self._registered_by_this_start(session)
                            and await self.consul_status(session) == "passing"
                        ):
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise WorkerFailed(f"worker not ready after {within:.0f}s{self._tail()}")

    async def _registered_by_this_start(self, http: aiohttp.ClientSession) -> bool:
        async with http.get(f"{self.consul_url}/v1/agent/services", headers={}) as resp:
            services = await resp.json()
        service = services.get(self.service_id)
        if service is None:
            return False
        started = (service.get("Meta") or {}).get(WORKER_META_STARTED)
        if started is None:  # a worker from before the meta existed (bench --against)
            return True
        return datetime.fromisoformat(started) >= self._started_after

    async def metric(self, name: str) -> float:
        """One metric from GET /metrics, summed over its label sets (0 when absent)."""
        async with aiohttp.ClientSession(headers=self.headers) as http:
            async with http.get(f"{self.base_url}/metrics") as resp:
                text = await resp.text()
        return metric_sum(text, name)

    async def committed_everything(self) -> bool:
        """Whether this worker's group has committed every record now in its topic.

        Once it has, everything those records cause (stored documents, dead letters,
        events) has been written: the worker commits only after those writes.
        """
        consumer = AIOKafkaConsumer(bootstrap_servers=self.kafka_bootstrap, group_id=self.app_id)
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            ends = await consumer.end_offsets(tps)
            committed = {tp: await consumer.committed(tp) for tp in tps}
        finally:
            await consumer.stop()
        return all((committed[tp] or 0) == ends[tp] for tp in tps)

    async def consul_status(self, session: aiohttp.ClientSession | None = None) -> str | None:
        """Status of this worker's TTL check in the local Consul agent; None if unregistered."""
        async with aiohttp.ClientSession() if session is None else _borrowed(session) as http:
            async with http.get(f"{self.consul_url}/v1/agent/checks", headers={}) as resp:
                checks = await resp.json()
        check = checks.get(f"service:{self.service_id}")
        return None if check is None else str(check["Status"])

    async def wait_exit(self, within: float = 30.0) -> int:
        deadline = time.monotonic() + within
        while self.returncode is None:
            if time.monotonic() > deadline:
                raise WorkerFailed(f"worker still running after {within:.0f}s{self._tail()}")
            await asyncio.sleep(0.1)
        return self.returncode

    async def terminate(self, within: float = 30.0) -> int:
        """SIGTERM (graceful: deregister, finish the batch, commit); the exit code."""
        if self._proc is None:
            return 0
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            return await self.wait_exit(within)
        except WorkerFailed:
            self.kill()
            raise

    def kill(self) -> int | None:
        """SIGKILL, as a crash would; the exit code (None if never started)."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.kill()
        return self._proc.wait()

    def log_text(self, since_start: bool = False) -> str:
        """The worker's output (JSON lines); since_start: only that of the latest start()."""
        if self.log_file is None or not self.log_file.exists():
            return ""
        with self.log_file.open("rb") as log:
            log.seek(self._log_offset if since_start else 0)
            return log.read().decode(errors="replace")

    def _tail(self, lines: int = 25) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        return f"; log {self.log_file} ends with:\n{tail}"


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    """Produce (key, value) pairs with plain aiokafka, acks=all, and wait for all of them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=key) for key, value in records]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
