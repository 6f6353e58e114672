"""Ctrl-C during a soak: what the first one does depends on how far the soak got."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


def _say(text: str) -> None:
    print(f"[soak] {text}", file=sys.stderr, flush=True)


class Interrupted(Exception):
    """Ctrl-C came before the load started: the soak cleans up and reports no verdict."""


class CtrlC:
    """The first Ctrl-C: during the set-up, the soak stops it and cleans up; during the
    load, it ends the load phase early (the checks and the report still run); after it,
    the checks go on. Each says so at once. A second Ctrl-C interrupts."""

    def __init__(self) -> None:
        self.pressed = asyncio.Event()
        self.phase = "set-up"  # then "load", then "checks"

    def install(self) -> None:
        loop = asyncio.get_running_loop()

        def first() -> None:
            loop.remove_signal_handler(signal.SIGINT)
            self.press()

        loop.add_signal_handler(signal.SIGINT, first)

    def press(self) -> None:
        self.pressed.set()
        if self.phase == "set-up":
            what = "stopping the set-up and cleaning up (a platform being started starts first)"
        elif self.phase == "load":
            what = "ending the load after one more sample; the checks and the report still run"
        else:
            what = "the load is over; finishing the checks and the report"
        _say(f"Ctrl-C: {what} (Ctrl-C again interrupts)")

    def check(self) -> None:
        """Raise Interrupted if Ctrl-C came during the set-up."""
        if self.pressed.is_set() and self.phase == "set-up":
            raise Interrupted

    async def setting_up(self, step: Awaitable[T]) -> T:
        """Await a step of the set-up, unless Ctrl-C comes first: then cancel it and
        raise Interrupted (the caller's clean-up runs)."""
        if self.pressed.is_set():  # before it starts: it does not run at all
            if asyncio.iscoroutine(step):
                step.close()
            self.check()
        task = asyncio.ensure_future(step)
        pressed = asyncio.create_task(self.pressed.wait())
        try:
            await asyncio.wait({task, pressed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waited in (task, pressed):
                waited.cancel()  # nothing when done
            await asyncio.gather(task, pressed, return_exceptions=True)
        self.check()  # also when the step ended at the same moment: the line said so
        return task.result()
