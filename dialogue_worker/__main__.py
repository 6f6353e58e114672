"""`python -m dialogue_worker`: run one dialogue worker until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pydantic import ValidationError
from pymongo.errors import ConfigurationError

from dialogue_worker.bootstrap import build
from dialogue_worker.runtime import EXIT_FAILED, WorkerRuntime
from dialogue_worker.settings import WorkerSettings
from platform_common.logs import setup_logging
from platform_common.settings_errors import invalid_settings

log = logging.getLogger("dialogue_worker")


async def _run(settings: WorkerSettings) -> int:
    try:
        parts = build(settings)
    except (ConfigurationError, OSError) as exc:  # MONGO_URL options the client refuses
        log.error("cannot start: %s", exc)  # together, a tlsCAFile it cannot read
        return EXIT_FAILED
    return await WorkerRuntime(parts).run()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """No arguments: `--help` says where the settings come from; anything else exits 2."""
    parser = argparse.ArgumentParser(
        prog="python -m dialogue_worker",
        description="Run one dialogue worker: persist the message topic to MongoDB, "
        "publish chat events, serve the internal API and keep its Consul registration, "
        "until SIGTERM or SIGINT.",
        epilog="It takes no arguments: every setting is an environment variable "
        "(KAFKA_BOOTSTRAP, MONGO_URL, CONSUL_URL, WORKER_HOST, WORKER_PORT, "
        "ENTRYPOINT_TOKEN, ...), listed in docs/worker.md. Outside DIALOGUE_ENV=local "
        "ENTRYPOINT_TOKEN must be set. Exit status: 0 stopped, 1 could not start or "
        "crashed, 3 another worker has its SERVICE_ID.",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run; `argv` is the command line's arguments (none when called from code)."""
    parse_args(argv or [])
    try:
        settings = WorkerSettings()
    except ValidationError as exc:
        print(invalid_settings("dialogue_worker", exc), file=sys.stderr)
        return EXIT_FAILED
    # faust/aiokafka are chatty at INFO about internals; keep their warnings.
    setup_logging(settings.log_level, quiet=("faust", "mode", "aiokafka"))
    return asyncio.run(_run(settings))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
