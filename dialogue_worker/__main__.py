"""`python -m dialogue_worker`: run one dialogue worker until SIGTERM."""

from __future__ import annotations

import asyncio
import sys

from pydantic import ValidationError

from dialogue_worker.bootstrap import build
from dialogue_worker.runtime import EXIT_FAILED, WorkerRuntime
from dialogue_worker.settings import WorkerSettings
from platform_common.logs import setup_logging


async def _run(settings: WorkerSettings) -> int:
    return await WorkerRuntime(build(settings)).run()


def main() -> int:
    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        print(f"dialogue_worker: invalid settings:\n{exc}", file=sys.stderr)
        return EXIT_FAILED
    # faust/aiokafka are chatty at INFO about internals; keep their warnings.
    setup_logging(settings.log_level, quiet=("faust", "mode", "aiokafka"))
    return asyncio.run(_run(settings))


if __name__ == "__main__":
    sys.exit(main())
