"""Exclusive file locks between the commands that share a run or cache folder."""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

#: Seconds between two tries for a contended lock when the wait can be given up.
POLL = 0.2


class Abandoned(RuntimeError):
    """The wait for a lock was given up (its `stop` event was set)."""


@contextmanager
def exclusive(
    path: Path,
    on_wait: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created if missing) for the block.

    When another holds it, `on_wait` is called once, then the wait blocks until the
    lock is free, or, with `stop`, until `stop` is set (Abandoned). A lock is per
    opened file: two holders in one process exclude each other as two processes do.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            _wait(handle.fileno(), path, stop)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait(fd: int, path: Path, stop: threading.Event | None) -> None:
    if stop is None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C interrupts it (PEP 475)
        return
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if stop.wait(POLL):
                raise Abandoned(f"gave up waiting for {path}") from None
