"""What `up` started, remembered in <run_dir>/state.json, and a lock for the commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from infra.local.locks import exclusive


@dataclass
class DevState:
    """Persisted between commands: a later `down` or `scale` acts on exactly this."""

    infra_started: list[str] = field(default_factory=list)  # infra.local services up started
    workers: list[int] = field(default_factory=list)  # indexes of the running workers
    demo_chat: str | None = None  # chat id of the curl example

    @classmethod
    def load(cls, run_dir: Path) -> DevState:
        try:
            data = json.loads((run_dir / "state.json").read_text())
        except (OSError, ValueError):
            return cls()
        return cls(
            infra_started=list(data.get("infra_started", [])),
            workers=sorted(int(i) for i in data.get("workers", [])),
            demo_chat=data.get("demo_chat"),
        )

    def save(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        tmp = run_dir / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(run_dir / "state.json")


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """One infra.dev command at a time per run folder (a second one waits, and says so:
    `make dev` may hold it for minutes while it provisions)."""

    def say() -> None:
        print(f"waiting for another make dev, scale or dev-down ({run_dir})", file=sys.stderr)

    with exclusive(run_dir / "lock", on_wait=say):
        yield
