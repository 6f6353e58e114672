"""`python -m gateway` as a subprocess, configured only through its environment."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import aiomysql

from infra.dev.settings import service_environment
from infra.local import LocalSettings
from infra.processes.logs import log_file
from infra.processes.private import free_port
from infra.processes.worker import WorkerProcess, metric_sum
from platform_common.local import LOCAL_ADMIN_TOKEN

REPO = Path(__file__).resolve().parents[2]
JWT_SECRET = "e2e-gateway-secret-" + "x" * 32
ISSUER = "dialogue-e2e"
MAX_BODY = 8192
#: Rate limits that never bite: tests that drive load are not about them (every RATE_*
#: setting of the gateway; a test about one sets it again).
LOOSE_LIMITS = {
    f"RATE_{name}": "1000000/1"
    for name in (
        "SIGN_UP_PER_ADDRESS",
        "SIGN_IN_PER_ADDRESS",
        "SIGN_IN_PER_USER",
        "CHATS_PER_ADDRESS",
        "CHATS_PER_USER",
        "MESSAGES_PER_ADDRESS",
        "MESSAGES_PER_USER",
        "STREAMS_PER_ADDRESS",
        "USER_LOOKUPS_PER_USER",
        "MEMBERS_PER_ADDRESS",
        "MEMBERS_PER_USER",
        "READS_PER_ADDRESS",
        "READS_PER_USER",
        "REFRESHES_PER_USER",
    )
} | {"SIGNIN_ADDRESS_MAX_FAILURES": "0", "SIGNIN_GLOBAL_MAX_FAILURES": "0"}


class GatewayProcess:
    """`python -m gateway` on a free port, configured only through its environment."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log_file = log_file("gateway")
        # Settings exported in the shell (a sourced compose .env's ADMIN_TOKEN, say) stay
        # out: the process is configured by `env` alone.
        self.env = service_environment(os.environ, {**env, "GATEWAY_PORT": str(self.port)})
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayProcess:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway"], cwd=REPO, env=self.env, stdout=log, stderr=log
            )
        return self

    async def wait_ready(self, within: float = 60.0) -> GatewayProcess:
        """Return once GET /ready answers 200 (MySQL, Kafka and a worker reachable)."""
        return await self._wait_for("/ready", "ready", within)

    async def wait_serving(self, within: float = 60.0) -> GatewayProcess:
        """Return once GET /health answers (a gateway without workers is never ready)."""
        return await self._wait_for("/health", "serving", within)

    async def _wait_for(self, path: str, what: str, within: float) -> GatewayProcess:
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None and self.proc.poll() is None, self.tail()
                try:
                    async with http.get(f"{self.url}{path}") as resp:
                        if resp.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"gateway not {what} after {within:.0f}s{self.tail()}")

    async def metric(self, name: str) -> float:
        """One metric from GET /metrics (local mode's admin token), summed over its labels."""
        headers = {"Authorization": f"Bearer {LOCAL_ADMIN_TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(f"{self.url}/metrics") as resp:
                return metric_sum(await resp.text(), name)

    def log_lines(self) -> list[str]:
        return self.log_file.read_text(errors="replace").splitlines()

    def error_lines(self) -> list[str]:
        """Log lines at level error or critical, and any traceback's."""
        bad = []
        for line in self.log_lines():
            try:
                level = json.loads(line).get("level")
            except (ValueError, AttributeError):
                level = None
            if level in ("error", "critical") or "Traceback" in line:
                bad.append(line)
        return bad

    def tail(self, lines: int = 30) -> str:
        text = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        return f"\nlog {self.log_file}:\n" + "\n".join(text)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def gateway_env(
    infra: LocalSettings, database: str, worker: WorkerProcess, consul_url: str
) -> dict[str, str]:
    return {
        "DIALOGUE_ENV": "local",
        "LOG_LEVEL": "INFO",
        "JWT_SECRET": JWT_SECRET,
        "JWT_ISSUER": ISSUER,
        "MYSQL_HOST": infra.host,
        "MYSQL_PORT": str(infra.mysql_port),
        "MYSQL_USER": infra.mysql_user,
        "MYSQL_PASSWORD": infra.mysql_password,
        "MYSQL_DATABASE": database,
        "KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "TOPIC": worker.topic,
        "EVENTS_TOPIC": worker.events_topic,
        "KAFKA_SEND_TIMEOUT": "2",
        "CONSUL_URL": consul_url,
        "ENTRYPOINT_TOKEN": worker.token,
        "MAX_BODY_BYTES": str(MAX_BODY),
        "SIGNIN_MAX_FAILURES": "3",
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
        **LOOSE_LIMITS,
    }


def standalone_env(infra: LocalSettings, database: str, service: str) -> dict[str, str]:
    """A gateway on the real MariaDB, Kafka and Consul whose WORKER_SERVICE has no worker."""
    return {
        "DIALOGUE_ENV": "local",
        "LOG_LEVEL": "INFO",
        "JWT_SECRET": JWT_SECRET,
        "MYSQL_HOST": infra.host,
        "MYSQL_PORT": str(infra.mysql_port),
        "MYSQL_USER": infra.mysql_user,
        "MYSQL_PASSWORD": infra.mysql_password,
        "MYSQL_DATABASE": database,
        "KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        "TOPIC": f"{service}.messages",
        "CONSUL_URL": infra.consul_url,
        "WORKER_SERVICE": service,
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_PARALLELISM": "1",
        **LOOSE_LIMITS,
    }


async def mysql_connect(infra: LocalSettings, database: str | None = None) -> aiomysql.Connection:
    """One connection of the project user to the local MariaDB (to `database`, if given),
    each statement committed as it runs."""
    return await aiomysql.connect(
        host=infra.host,
        port=infra.mysql_port,
        user=infra.mysql_user,
        password=infra.mysql_password,
        db=database,
        autocommit=True,
    )


async def mysql_execute(infra: LocalSettings, sql: str) -> None:
    """Run one statement as the project user, outside any database (CREATE/DROP DATABASE)."""
    conn = await mysql_connect(infra)
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql)
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def serving_gateway(env: dict[str, str]) -> AsyncIterator[GatewayProcess]:
    """A gateway started with `env`, once it serves; stopped when the block ends."""
    process = GatewayProcess(env).start()
    try:
        yield await process.wait_serving()
    finally:
        await process.stop()


def users_command(
    infra: LocalSettings, database: str, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python -m gateway.users *args` on `database` of the local MariaDB; `env` overrides
    its settings."""
    settings = {
        "PATH": os.environ["PATH"],
        "DIALOGUE_ENV": "local",
        "MYSQL_HOST": infra.host,
        "MYSQL_PORT": str(infra.mysql_port),
        "MYSQL_USER": infra.mysql_user,
        "MYSQL_PASSWORD": infra.mysql_password,
        "MYSQL_DATABASE": database,
        "MYSQL_CONNECT_WAIT": "5",
    }
    command = [sys.executable, "-m", "gateway.users", *args]
    return subprocess.run(command, env=settings | env, capture_output=True, text=True, timeout=120)


@contextlib.asynccontextmanager
async def scratch_database(infra: LocalSettings, name: str) -> AsyncIterator[str]:
    """A new, empty MySQL database `name` for a test, dropped when it ends."""
    await mysql_execute(infra, f"CREATE DATABASE `{name}`")
    try:
        yield name
    finally:
        await mysql_execute(infra, f"DROP DATABASE `{name}`")
