"""`python -m dialogue_worker`: run one dialogue worker until SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError

from dialogue_worker.bootstrap import build
from dialogue_worker.logs import setup_logging
from dialogue_worker.runtime import EXIT_FAILED, WorkerRuntime
from dialogue_worker.settings import WorkerSettings


async def _run(settings: WorkerSettings) -> int:
    return await WorkerRuntime(build(settings)).run()


def main() -> int:
    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        print(f"dialogue_worker: invalid settings:\n{exc}", file=sys.stderr)
        return EXIT_FAILED
    setup_logging(settings.log_level)
    return asyncio.run(_run(settings))


if __name__ == "__main__":
    sys.exit(main())
