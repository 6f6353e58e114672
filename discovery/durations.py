"""Consul's Go-style durations ("10s", "500ms", "1m") to and from seconds."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def to_seconds(duration: str) -> float:
    """Parse a Go duration such as "1m30s" or "250ms"; raises ValueError otherwise."""
    text = duration.strip()
    if not text:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"not a duration: {duration!r} (expected e.g. '10s', '500ms', '1m')")
    return total


def to_go(seconds: float) -> str:
    """Seconds as a Go duration Consul accepts, in whole milliseconds."""
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {seconds}")
    return f"{max(1, round(seconds * 1000))}ms"
