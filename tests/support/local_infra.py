"""For tests of infra/local without its real services: stand-in processes, a progress
that records, and settings that keep everything in a scratch folder."""

from __future__ import annotations

import re
from pathlib import Path

from infra.local.service import Progress
from infra.local.settings import LocalSettings

#: A stand-in service's program: a process that waits for signals until one stops it.
SLEEPER = "import signal\nwhile True:\n    signal.pause()\n"


class Recorder(Progress):
    """Keeps every progress line, "<service> <message>"."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def step(self, service: str, message: str) -> None:
        self.lines.append(f"{service} {message}")

    def pids(self) -> list[int]:
        """The pids of the starts it was told of."""
        return [int(m) for line in self.lines for m in re.findall(r"starting \(pid (\d+)", line)]


def scratch_settings(folder: Path) -> LocalSettings:
    """Run, cache and PostgreSQL folders under `folder`."""
    return LocalSettings.from_env(
        {
            "LOCAL_RUN_DIR": str(folder / "run"),
            "LOCAL_CACHE_DIR": str(folder / "cache"),
            "LOCAL_POSTGRES_RUN_DIR": str(folder / "run"),
        }
    )
