"""Where the gateways and workers that tests and benchmarks start write their logs.

Each Python process (a test session, a benchmark) gets a folder of its own under
`<tmp>/dialogue-platform-logs-<uid>/`, named by when it began and its pid. A test
session leaves about sixty logs (~10 MB); they were loose files in the temporary folder
and piled up run after run. Starting a folder removes the older ones beyond the newest
KEEP whose process has ended, so the logs of the last few runs stay to be read after a
failure, and those of a run still going are never taken from it.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

#: How many runs' folders are kept (besides those of runs still going).
KEEP = 5


def logs_root() -> Path:
    """The folder of every run's logs, one per user (the temporary folder is shared)."""
    return Path(tempfile.gettempdir()) / f"dialogue-platform-logs-{os.getuid()}"


def log_file(prefix: str) -> Path:
    """A new, empty log file named `<prefix>-<random>.log` in this process's folder."""
    fd, path = tempfile.mkstemp(prefix=f"{prefix}-", suffix=".log", dir=_run_folder())
    os.close(fd)
    return Path(path)


@functools.cache
def _run_folder() -> Path:
    root = logs_root()
    root.mkdir(mode=0o700, exist_ok=True)
    _check_private(root)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = Path(tempfile.mkdtemp(prefix=f"{stamp}-{os.getpid()}-", dir=root))
    prune(root, keep=KEEP)
    return folder


def _check_private(root: Path) -> None:
    """Refuse a logs folder another user made or can write to: its name is predictable
    in the shared temporary folder, so anyone could make it first."""
    found = root.lstat()
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o022:
        raise RuntimeError(
            f"{root} is not a folder of this user's that only it can write to; "
            "remove it, or set TMPDIR to a folder of your own"
        )


def prune(root: Path, keep: int) -> list[Path]:
    """Remove the run folders in `root` older than the newest `keep` whose process has
    ended (the pid in its name is gone); return what was removed. Anything else in
    `root` is left as it is."""
    runs = sorted((f, pid) for f in root.iterdir() if f.is_dir() and (pid := _pid(f)))
    removed = []
    for folder, pid in runs[: max(len(runs) - keep, 0)]:
        if not _running(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _pid(folder: Path) -> int | None:
    """The pid in a run folder's name (`<date>-<time>-<pid>-<random>`), or None."""
    parts = folder.name.split("-")
    if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
        return None
    return int(parts[2])


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process has that pid now
        return True
    return True
