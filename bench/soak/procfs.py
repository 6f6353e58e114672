"""Memory, CPU time and open sockets of processes, read from /proc (Linux only; psutil is
not a dependency of the project, and these few numbers do not need it)."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, field: str) -> int | None:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def rss_mib(pid: int) -> float | None:
    """Resident set size in MiB (None: the process is gone)."""
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else kb / 1024


def _pss_kb(pid: int) -> int | None:
    try:
        for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def children(pid: int) -> list[int]:
    """Every descendant of `pid` (a scan of /proc: the parent of each process)."""
    parents: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_mib(pid: int) -> float | None:
    """Memory in MiB of a process and its descendants (PostgreSQL: one per connection).

    Summed proportional set size (PSS), so memory the processes share (PostgreSQL's
    shared buffers) counts once, not once per backend; RSS where PSS is unreadable.
    """
    total = 0
    for member in [pid, *children(pid)]:
        kb = _pss_kb(member)
        if kb is None:
            kb = _status_kb(member, "VmRSS")
        if kb is None and member == pid:
            return None
        total += kb or 0
    return total / 1024


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time the process has used so far."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def sockets(pid: int) -> int | None:
    """Open socket descriptors of the process (TCP connections, listeners, pipes excluded)."""
    count = 0
    try:
        for fd in (PROC / str(pid) / "fd").iterdir():
            try:
                count += os.readlink(fd).startswith("socket:")
            except OSError:
                continue  # closed meanwhile
    except OSError:
        return None
    return count
