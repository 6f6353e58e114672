"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from infra.local import LocalSettings
from infra.processes.worker import WorkerProcess


@pytest.fixture(scope="module")
async def worker(
    infra: LocalSettings, unique: Callable[[str], str]
) -> AsyncIterator[WorkerProcess]:
    """One real worker (own topic, group, database, port), for the tests of a module."""
    proc = WorkerProcess.for_test(infra, unique).start()
    try:
        await proc.wait_ready()
        yield proc
    finally:
        await proc.terminate()


@pytest.fixture(scope="module")
async def mongo(
    infra: LocalSettings, worker: WorkerProcess
) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    """A client of the local MongoDB-protocol server; drops the worker's database after."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(infra.mongo_url)
    yield client
    await client.drop_database(worker.mongo_db)
    await client.close()
