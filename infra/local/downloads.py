"""Commands that reach a registry (apt, the Go proxy, Maven Central): bounded, and tried
twice when they fail.

A stalled mirror or proxy would otherwise hold `make infra-up` (and CI) until its own
time limit, and one dropped connection would fail the whole start. Each command gets a
time limit of its own; a command that fails gets one more try after a short pause, one
that ran out of time does not (it would cost as much again). The last failure is a
ServiceError that names the command and ends with its output.
"""

from __future__ import annotations

import contextlib
import os
import signal
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
    """Run `args`, at most `timeout` seconds a try, tried ATTEMPTS times; its result.

    A try that ran out of time is not made again: a stalled proxy or a cold build that
    long would cost the same again (twice 30 min for Consul's build, most of CI's 90)."""
    failure = ""
    for attempt in range(1, ATTEMPTS + 1):
        # Its own process group: on a timeout the whole tree goes (dpkg under apt-get,
        # the compilers under go), not only the command, so the next try finds no lock.
        with subprocess.Popen(
            list(args),
            env=None if env is None else dict(env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as proc:
            try:
                stdout, stderr = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise ServiceError(
                    f"{what}: {' '.join(args)} gave no result within {timeout:g} s "
                    f"(try {attempt}; not tried again)"
                ) from None
            else:
                if proc.returncode == 0:
                    return subprocess.CompletedProcess(proc.args, 0, stdout, stderr)
                failure = f"exit code {proc.returncode}:\n{stdout[-2000:]}{stderr[-3000:]}"
        if attempt < ATTEMPTS:
            time.sleep(PAUSE)
    raise ServiceError(f"{what}: {' '.join(args)} failed ({ATTEMPTS} tries); {failure}")
