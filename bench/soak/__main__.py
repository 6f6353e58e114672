"""`python -m bench.soak [--minutes 30] ...` (make soak); `--help` lists the settings."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from bench.soak.run import soak, unexpected
from bench.soak.settings import from_args


def main(argv: Sequence[str] | None = None) -> int:
    settings = from_args(argv)
    try:
        return asyncio.run(soak(settings))
    except Exception as exc:  # raised outside soak() (the event loop's own shutdown): still 2
        return unexpected(exc, settings.out)


if __name__ == "__main__":
    sys.exit(main())
