"""Install a Debian package when a service needs one (as root; otherwise say what to run)."""

from __future__ import annotations

import os
import subprocess
import threading

from infra.local.service import Progress, ServiceError

# Services provision side by side; dpkg takes one installation at a time.
_APT = threading.Lock()


def apt_install(service: str, package: str, progress: Progress) -> None:
    """apt-get install -y package; a ServiceError naming the command when that fails."""
    if os.geteuid() != 0:
        raise ServiceError(f"{package} is not installed; run: sudo apt-get install -y {package}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with _APT:
        progress.step(service, f"installing {package} (apt-get)")
        for args in (
            ["apt-get", "update", "-qq"],
            # Wait for a dpkg lock held by another apt run instead of failing at once.
            ["apt-get", "install", "-y", "-qq", "-o", "DPkg::Lock::Timeout=300", package],
        ):
            proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise ServiceError(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
