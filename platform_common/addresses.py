"""Checks of the addresses a service is configured with, made when its settings are read:
a typo fails at start-up naming the setting, not minutes later inside a client library."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, SecretStr


def kafka_bootstrap(value: str) -> str:
    """`value` if it is a comma-separated list of host:port (IPv6 in brackets)."""
    entries = [part.strip() for part in value.split(",")]
    if not value.strip() or not all(entries):
        raise ValueError(f"expected host:port[,host:port...], got {value[:80]!r}")
    for entry in entries:
        host, colon, port = entry.rpartition(":")
        if not colon or not host or host in ("[", "[]"):
            raise ValueError(f"{entry[:80]!r} is not host:port")
        if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"{entry[:80]!r}: the port is not a number from 1 to 65535")
    return value


def consul_address(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of a Consul agent's URL, http(s)://host[:port] (no scheme:
    http; no port: 8500, or 443 over https); ValueError when it names none."""
    parts = urlsplit(url if "//" in url else f"//{url}")
    shown = _without_credentials(url, parts.netloc)
    if parts.scheme not in ("", "http", "https"):
        raise ValueError(f"{shown!r}: the scheme must be http or https")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if not parts.hostname or port == 0:
        raise ValueError(f"not a Consul URL: {shown!r} (expected e.g. http://127.0.0.1:8500)")
    scheme = parts.scheme or "http"
    return scheme, parts.hostname, port or (443 if scheme == "https" else 8500)


def _without_credentials(url: str, netloc: str) -> str:
    """The URL as an error may quote it: its user and password replaced, cut to 80."""
    credentials, at, _ = netloc.rpartition("@")
    return (url.replace(credentials + at, "***@", 1) if at else url)[:80]


def consul_url(value: str) -> str:
    """`value` if it names a Consul agent (`consul_address`)."""
    consul_address(value)
    return value


#: A settings field of Kafka bootstrap servers, checked when read.
KafkaBootstrap = Annotated[str, AfterValidator(kafka_bootstrap)]
#: A settings field naming a Consul agent, checked when read.
ConsulUrl = Annotated[str, AfterValidator(consul_url)]


def unset_if_empty(value: object) -> object:
    """None for an empty value: `CONSUL_TOKEN=` means no token, and is told at start as
    an unset one is (it sent no token while the start-up warning said nothing)."""
    return None if value == "" else value


#: A settings field holding a Consul ACL token; empty is unset.
ConsulToken = Annotated[SecretStr | None, BeforeValidator(unset_if_empty)]
