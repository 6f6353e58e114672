"""The values the library hands out and takes in: instances, health, registrations."""

from __future__ import annotations

import ipaddress
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

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def is_wildcard(host: str) -> bool:
    """Whether `host` means "every address" (a bind address, not one to reach), in any
    spelling: "", "0.0.0.0", "0", "0x0", "::", "::0", "0:0:0:0:0:0:0:0", "[::]"."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        return True
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped.is_unspecified  # ::ffff:0.0.0.0
        return address.is_unspecified
    try:  # the C library's shorthands, which connect() and bind() take: "0", "0.0", "0x0"
        return socket.inet_aton(text) == bytes(4)
    except (OSError, ValueError):  # not an address (ValueError: a NUL or non-ASCII in it)
        return False


@dataclass(frozen=True)
class Instance:
    """One serving instance of a service (no check of it critical), as Consul lists it."""

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
        if is_wildcard(self.address):
            raise ValueError(
                f"address {self.address!r} is a wildcard; register the address clients "
                "can reach (the host's IP or name), not the bind address"
            )
        if self.address.startswith("["):
            raise ValueError(
                f"address {self.address!r}: write an IPv6 address without brackets "
                "(the URL adds them)"
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
    name = socket.gethostname() if is_wildcard(host) else host
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
