"""The orchestrator and a load process talk in JSON lines over the load's stdin/stdout.

    load -> {"ready": {...}}                       once its clients are set up
    orch -> {"cmd": "tick"}                        every sample
    load -> {"stats": IntervalStats}               what it measured since the last tick
    orch -> {"cmd": "stop", ...}                   the load phase is over
    load -> {"final": "<path of its JSON report>"}  and it exits

A load process that loses its stdin (the orchestrator died) stops on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Protocol

from bench._common import LoopLag
from bench.soak.stats import IntervalStats

REPO = Path(__file__).resolve().parents[2]
#: A reply line may be large (a final report path is small, stats are a few KB).
LINE_LIMIT = 16 * 1024 * 1024


class LoadFailed(RuntimeError):
    """A load process exited or did not answer; the message ends with its log."""


class Load(Protocol):
    """What a load process implements; `serve` drives it from the commands."""

    async def start(self) -> dict[str, Any]: ...

    def take_stats(self) -> IntervalStats: ...

    async def stop(self, command: dict[str, Any]) -> dict[str, Any]: ...


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def serve(load: Load, name: str, final_path: Path) -> None:
    """The load side: start, answer ticks, stop and write the final report."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    lag = LoopLag(0.1)
    _reply({"ready": await load.start()})
    lag.start()
    try:
        while line := await reader.readline():
            command = json.loads(line)
            if command["cmd"] == "tick":
                stats = load.take_stats()
                stats.gauges[f"loop_lag_ms_{name}"] = round(lag.take_worst() * 1000, 1)
                _reply({"stats": stats.to_json()})
            elif command["cmd"] == "stop":
                final = await load.stop(command)
                await asyncio.to_thread(final_path.write_text, json.dumps(final) + "\n")
                _reply({"final": str(final_path)})
                return
        await load.stop({})  # stdin closed: nobody is listening any more
    finally:
        await lag.stop()


class LoadProcess:
    """The orchestrator's handle on one load process (`python -m <module> plan final`)."""

    def __init__(self, name: str, module: str, plan: Path, out: Path) -> None:
        self.name = name
        self.module = module
        self.plan = plan
        self.final_path = out / f"{name}.final.json"
        self.log_path = out / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    async def start(self, within: float) -> dict[str, Any]:
        """Start it; its "ready" payload once its clients are set up."""
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                str(self.plan),
                str(self.final_path),
                cwd=REPO,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                limit=LINE_LIMIT,
                start_new_session=True,  # a Ctrl-C at the terminal is the orchestrator's
            )
        ready: dict[str, Any] = (await self._ask(None, "ready", within))["ready"]
        return ready

    async def tick(self, within: float = 30.0) -> IntervalStats:
        answer = await self._ask({"cmd": "tick"}, "stats", within)
        return IntervalStats.from_json(answer["stats"])

    async def stop(self, within: float, **extra: Any) -> dict[str, Any]:
        """End its load; its final report."""
        answer = await self._ask({"cmd": "stop", **extra}, "final", within)
        text = await asyncio.to_thread(Path(answer["final"]).read_text)
        report: dict[str, Any] = json.loads(text)
        await self.close()
        return report

    async def _ask(self, command: dict[str, Any] | None, key: str, within: float) -> Any:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        try:
            if command is not None:
                self.proc.stdin.write((json.dumps(command) + "\n").encode())
                await self.proc.stdin.drain()
            async with asyncio.timeout(within):
                line = await self.proc.stdout.readline()
        except (TimeoutError, ConnectionError) as exc:
            raise LoadFailed(f"{self.name} did not answer {key!r}: {exc!r}{self.tail()}") from exc
        if not line:
            raise LoadFailed(f"{self.name} exited ({self.proc.returncode}){self.tail()}")
        answer = json.loads(line)
        if key not in answer:
            raise LoadFailed(f"{self.name} answered {answer!r} instead of {key!r}")
        return answer

    def tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"\n{self.name} log {self.log_path} ends with:\n" + "\n".join(text)

    async def close(self) -> None:
        """Make sure it is gone (SIGTERM, then SIGKILL); safe to call twice."""
        proc = self.proc
        if proc is None:
            return
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        if proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await proc.wait()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
