"""Test harness: starts the real local infrastructure once per session and hands
out unique names, so tests never wipe shared state."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from hypothesis import settings as hypothesis_settings
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from infra.dev.platform import DevPlatform
from infra.local import LocalSettings, Stack
from tests.support.faults import Platform

# No test asserts on speed: hypothesis's per-example deadline (200 ms by default) is such
# an assertion, and a loaded 2-core machine exceeds it (1.2 s seen under `stress --cpu 2`).
hypothesis_settings.register_profile("dialogue", deadline=None)
hypothesis_settings.load_profile("dialogue")

TESTS = Path(__file__).parent
LAYERS = ("unit", "integration", "e2e", "browser", "faults")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by its folder (tests/unit -> unit, ...)."""
    for item in items:
        rel = Path(str(item.fspath)).relative_to(TESTS)
        if rel.parts[0] in LAYERS:
            item.add_marker(getattr(pytest.mark, rel.parts[0]))


@pytest.fixture(scope="session")
def run_id() -> str:
    """A short id unique to this test session (topic, group, database and app names)."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def unique(run_id: str) -> Callable[[str], str]:
    """unique("chats") -> "chats-1a2b3c4d-7": a fresh name for each call."""
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}-{run_id}-{next(counter)}"


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port bound but not listening: every connection is refused at once, and
    nothing else can take the port meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture(scope="session")
def stack(pytestconfig: pytest.Config, run_id: str) -> Iterator[Stack]:
    """The real infrastructure, started if needed; what this session started it stops.

    KEEP_INFRA=1 leaves it running for the next session (faster local loops). The topics
    this session made are deleted at its end: a broker that keeps every test run's
    partitions restarts slowly (5,000 of them held up new topics' leaders for > 30 s).
    So are the workers' MongoDB databases (on FerretDB each is a PostgreSQL schema of
    tables and indexes, ~20 per session, kept in the run folder's cluster).
    """
    stack = Stack()
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    # A first start builds Consul and FerretDB for minutes: show its progress lines live.
    with capture.global_and_fixture_disabled():
        started = stack.up()
    yield stack
    with ThreadPoolExecutor(max_workers=1) as pool:  # its own loop, whatever runs here
        pool.submit(asyncio.run, _delete_topics(stack.settings.kafka_bootstrap, f"-{run_id}-"))
        pool.submit(asyncio.run, _drop_databases(stack.settings.mongo_url, f"_{run_id}_"))
    if started and os.environ.get("KEEP_INFRA") != "1":
        with capture.global_and_fixture_disabled():
            if not _used_by_make_dev():
                stack.down(started)


def _used_by_make_dev() -> bool:
    """Whether `make dev` runs on the infrastructure this session started (it found it
    running, so it will not stop it either): then it is left running, and said so."""
    gateway = DevPlatform().gateway().pid()
    if gateway is not None:
        print(
            f"infra left running: make dev's gateway (pid {gateway}) uses it; "
            "`make dev-down` then `make infra-down` stop both",
            file=sys.stderr,
        )
    return gateway is not None


async def _delete_topics(bootstrap: str, marker: str) -> None:
    """Delete the topics whose name holds `marker`; best effort, bounded."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        async with asyncio.timeout(60):
            await admin.start()
            ours = [t for t in await admin.list_topics() if marker in t]
            if ours:
                await admin.delete_topics(ours)
    except (TimeoutError, KafkaError):
        pass  # the next session's names are different anyway
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def _drop_databases(url: str, marker: str) -> None:
    """Drop the MongoDB databases whose name holds `marker`; best effort, bounded."""
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(url, timeoutMS=30000)
    try:
        async with asyncio.timeout(120):
            for name in await client.list_database_names():
                if marker in name:
                    await client.drop_database(name)
    except (TimeoutError, PyMongoError):
        pass  # names are never reused; a later session may find them still there
    finally:
        await client.close()


@pytest.fixture(scope="session")
def infra(stack: Stack) -> LocalSettings:
    """Where the running services listen."""
    return stack.settings


@pytest.fixture(scope="module")
async def platform(infra: LocalSettings, unique: Callable[[str], str]) -> AsyncIterator[Platform]:
    """Two workers and a gateway of the module's own (end-to-end and browser tests)."""
    async with Platform.start(infra, unique, consul_url=infra.consul_url) as started:
        yield started
