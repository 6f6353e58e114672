"""`python -m bench.soak [--minutes 30] ...` (make soak); `--help` lists the settings."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from bench.soak.run import soak
from bench.soak.settings import from_args


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(soak(from_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
