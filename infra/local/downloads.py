"""Commands that reach a registry (apt, the Go proxy, Maven Central): bounded and tried twice.

A stalled mirror or proxy would otherwise hold `make infra-up` (and CI) until its own
time limit, and one dropped connection would fail the whole start. Each command gets a
time limit of its own and one more try after a short pause; the second failure is a
ServiceError that names the command and ends with its output.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from infra.local.service import ServiceError

#: Tries of each command: the first, and one more for a transient failure.
ATTEMPTS = 2
#: Seconds between the tries.
PAUSE = 5.0


def run_fetching(
    args: Sequence[str],
    *,
    what: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `args`, at most `timeout` seconds a try, tried ATTEMPTS times; its result."""
    failure = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            proc = subprocess.run(
                list(args),
                env=None if env is None else dict(env),
                cwd=cwd,
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            failure = f"no result within {timeout:g} s"
        else:
            if proc.returncode == 0:
                return proc
            failure = f"exit code {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        if attempt < ATTEMPTS:
            time.sleep(PAUSE)
    raise ServiceError(f"{what}: {' '.join(args)} failed ({ATTEMPTS} tries); {failure}")
