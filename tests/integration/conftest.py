"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

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
