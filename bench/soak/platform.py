"""The platform under soak: `make dev`'s (infra/dev), started for the run and stopped
after it, or the one already running (which keeps running)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cached_property

from infra.dev.platform import DevPlatform
from infra.dev.settings import DevSettings
from infra.dev.state import DevState
from infra.local.service import Progress
from infra.local.stack import Stack

#: The services sampled for context, by the name they have in the stack.
CONTEXT = ("kafka", "consul", "ferretdb", "postgres", "mariadb")


class SoakError(RuntimeError):
    """The soak cannot run (no platform, a load process died); the message says why."""


class _Quiet(Progress):
    def step(self, service: str, message: str) -> None:
        pass


@dataclass
class Target:
    """Where the platform listens and which processes make it up."""

    dev: DevSettings
    platform: DevPlatform
    started: bool  # by this soak (and so stopped by it)

    @property
    def api_url(self) -> str:
        return self.dev.api_url

    @cached_property
    def stack(self) -> Stack:
        return Stack(self.dev.local, _Quiet())

    def workers(self) -> list[int]:
        """Indexes of the workers make dev runs now (`make scale` may change them)."""
        return DevState.load(self.dev.run_dir).workers

    def app_pids(self) -> dict[str, int | None]:
        """The gateway and each worker: the processes whose memory the issue bounds."""
        pids = {"gateway": self.platform.gateway().pid()}
        for index in self.workers():
            pids[f"worker-{index}"] = self.platform.worker(index).pid()
        return pids

    def context_pids(self) -> dict[str, int | None]:
        """Kafka (each node), Consul, FerretDB, PostgreSQL, MariaDB."""
        return {
            name: self.stack.process(name).pid()
            for name in self.stack.services
            if name.split("-")[0] in CONTEXT
        }


def _say(text: str) -> None:
    print(f"[soak] {text}", file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def target(use_running: bool, workers: int | None, keep: bool) -> AsyncIterator[Target]:
    """The platform of `make dev` (DEV_* settings): started here unless it runs already."""
    dev = DevSettings.from_env()
    platform = DevPlatform(dev)
    running = platform.gateway().pid() is not None
    if use_running and not running:
        raise SoakError(f"--use-running: no make dev platform runs (run folder {dev.run_dir})")
    if running:
        status = await asyncio.to_thread(platform.status)
        if not status.gateway_ready:
            raise SoakError(f"the running platform is not ready: {dev.api_url}/ready")
        note = " (--workers ignored)" if workers is not None else ""
        _say(f"using the running platform at {dev.api_url}; it keeps running afterwards{note}")
    try:
        if not running:
            _say("starting the platform as make dev does")
            await asyncio.to_thread(platform.up, workers)
        yield Target(dev, platform, started=not running)
    finally:
        if not running and not keep:
            _say("stopping the platform it started")
            await asyncio.to_thread(platform.down)
