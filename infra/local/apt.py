"""Install a Debian package when a service needs one (as root; otherwise say what to run)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from infra.local.downloads import run_fetching
from infra.local.locks import exclusive
from infra.local.service import Progress, ServiceError

#: Seconds one apt-get command may take (a package download included).
APT_TIMEOUT = 900.0

#: Held around every apt-get run, by every process of the project on the machine:
#: services provision side by side, and two clones may provision at once. dpkg's own
#: lock can be waited for (DPkg::Lock::Timeout), but `apt-get update` fails at once on
#: the lists' lock another update holds (a thread lock did not cover other processes).
APT_LOCK = Path("/run/lock/dialogue-platform-apt.lock")


def apt_install(service: str, package: str, progress: Progress) -> None:
    """apt-get install -y package; a ServiceError naming the command when that fails."""
    if os.geteuid() != 0:
        raise ServiceError(f"{package} is not installed; run: sudo apt-get install -y {package}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with exclusive(APT_LOCK, lambda: progress.step(service, "waiting for another apt-get run")):
        progress.step(service, f"installing {package} (apt-get)")
        # Finish what an interrupted dpkg left half-configured (a killed earlier run), or
        # every install fails at once until someone runs it by hand. Not fatal: dpkg
        # cannot wait for its lock (apt-daily may hold it), and the install below can.
        with contextlib.suppress(ServiceError):
            run_fetching(["dpkg", "--configure", "-a"], what=service, timeout=APT_TIMEOUT, env=env)
        for args in (
            ["apt-get", "update", "-qq"],
            # Wait for a dpkg lock held by another apt run instead of failing at once.
            ["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", package],
        ):
            run_fetching(args, what=service, timeout=APT_TIMEOUT, env=env)
