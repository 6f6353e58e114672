"""Test harness: starts the real local infrastructure once per session and hands
out unique names, so tests never wipe shared state."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from infra.local import LocalSettings, Stack

# No test asserts on speed: hypothesis's per-example deadline (200 ms by default) is such
# an assertion, and a loaded 2-core machine exceeds it (1.2 s seen under `stress --cpu 2`).
hypothesis_settings.register_profile("dialogue", deadline=None)
hypothesis_settings.load_profile("dialogue")

TESTS = Path(__file__).parent
LAYERS = ("unit", "integration", "e2e", "faults")


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


@pytest.fixture(scope="session")
def stack(pytestconfig: pytest.Config) -> Iterator[Stack]:
    """The real infrastructure, started if needed; what this session started it stops.

    KEEP_INFRA=1 leaves it running for the next session (faster local loops).
    """
    stack = Stack()
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    # A first start builds Consul and FerretDB for minutes: show its progress lines live.
    with capture.global_and_fixture_disabled():
        started = stack.up()
    yield stack
    if started and os.environ.get("KEEP_INFRA") != "1":
        with capture.global_and_fixture_disabled():
            stack.down(started)


@pytest.fixture(scope="session")
def infra(stack: Stack) -> LocalSettings:
    """Where the running services listen."""
    return stack.settings
