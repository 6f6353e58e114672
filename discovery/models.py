"""The values the library hands out and takes in: instances, health, registrations."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

HealthStatus = Literal["passing", "warning", "critical"]

#: The tag every dialogue worker registers with, and the meta key naming its app (the
#: consumer group). The gateway sends its internal token only to instances that have both.
WORKER_TAG = "dialogue-worker"
WORKER_META_APP_ID = "app_id"
#: Meta key of when the worker process started (ISO 8601, UTC).
WORKER_META_STARTED = "started"

_WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Instance:
    """One registered, passing instance of a service, as Consul reports it."""

    id: str
    address: str
    port: int
    meta: Mapping[str, str] = field(default_factory=dict, hash=False)
    tags: tuple[str, ...] = ()

    @property
    def base_url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class HealthReport:
    """What a health probe says about its process; `reason` becomes the check's notes."""

    status: HealthStatus
    reason: str = ""

    @classmethod
    def passing(cls, reason: str = "") -> HealthReport:
        return cls("passing", reason)

    @classmethod
    def warning(cls, reason: str) -> HealthReport:
        return cls("warning", reason)

    @classmethod
    def critical(cls, reason: str) -> HealthReport:
        return cls("critical", reason)


@dataclass(frozen=True)
class Registration:
    """How a worker announces itself: the address and port its web server listens on."""

    instance_id: str
    address: str
    port: int
    version: str
    service: str = "dialogue"
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.instance_id:
            raise ValueError("instance_id must not be empty")
        if self.address in _WILDCARDS:
            raise ValueError(
                f"address {self.address!r} is a wildcard; register the address clients "
                "can reach (the host's IP or name), not the bind address"
            )
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1-65535, got {self.port}")

    @property
    def all_meta(self) -> dict[str, str]:
        """The meta sent to Consul: the caller's, plus the version."""
        return {**self.meta, "version": self.version}

    @property
    def all_tags(self) -> list[str]:
        return [*self.tags, f"version={self.version}"]


def instance_id_for(host: str, port: int, env: Mapping[str, str] | None = None) -> str:
    """`SERVICE_ID` from the environment, else "<host>-<port>" (hostname for a wildcard host)."""
    environ = os.environ if env is None else env
    explicit = environ.get("SERVICE_ID", "").strip()
    if explicit:
        return explicit
    name = socket.gethostname() if host in _WILDCARDS else host
    return f"{_UNSAFE_ID_CHARS.sub('-', name).strip('-') or 'host'}-{port}"


@dataclass(frozen=True)
class UpstreamResponse:
    """An instance's answer (status < 500), read in full."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    instance_id: str

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class InstanceStats:
    """Counters of one instance as the balancer sees it (for admin and metrics endpoints).

    `ejected_until` is on the balancer's monotonic clock; None when not ejected.
    """

    id: str
    url: str
    requests: int
    failures: int
    ejections: int
    ejected_until: float | None
    healthy: bool
