"""Checks of the addresses a service is configured with, made when its settings are read:
a typo fails at start-up naming the setting, not minutes later inside a client library."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, SecretStr


def kafka_bootstrap(value: str) -> str:
    """`value` if it is a comma-separated list of host:port (IPv6 in brackets)."""
    entries = [part.strip() for part in value.split(",")]
    if "@" in value:  # not quoted: what stands before it may be a password
        raise ValueError(
            "a bootstrap server is host:port, without a user or password before an '@' "
            "(the platform's Kafka clients do not authenticate)"
        )
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
    if "@" in url:
        # Consul was never sent a user or password (the client takes the host and port),
        # and they showed in every error quoting the URL (found in review). Not quoted:
        # a password holding '/', '?' or '#' puts the '@' outside what urlsplit calls
        # the host part, so no part of such a URL is safe to show.
        raise ValueError(
            "a Consul URL with an '@' in it: Consul takes an ACL token (CONSUL_TOKEN), "
            "not a user and password in the URL"
        )
    parts = urlsplit(url if "//" in url else f"//{url}")
    shown = url[:80]
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


def host_name(value: str) -> str:
    """`value` if it can be a host name or IP address: not empty, and none of the
    characters that would make it a URL or a user (`@`, `/`, white space). The value is
    not quoted when it holds an `@`: what stands before it may be a password (found in
    review: MYSQL_HOST='admin:secret@db' was printed whole in "MySQL ... unreachable")."""
    if "@" in value:
        raise ValueError("a host name, without a user or password before an '@'")
    if not value or "/" in value or any(c.isspace() for c in value):
        raise ValueError(f"a host name or IP address, got {value[:80]!r}")
    return value


def consul_url(value: str) -> str:
    """`value` if it names a Consul agent (`consul_address`)."""
    consul_address(value)
    return value


#: A settings field of Kafka bootstrap servers, checked when read.
KafkaBootstrap = Annotated[str, AfterValidator(kafka_bootstrap)]
#: A settings field naming a host (MySQL's), checked when read.
HostName = Annotated[str, AfterValidator(host_name)]
#: A settings field naming a Consul agent, checked when read.
ConsulUrl = Annotated[str, AfterValidator(consul_url)]


def unset_if_empty(value: object) -> object:
    """None for an empty value: `CONSUL_TOKEN=` means no token, and is told at start as
    an unset one is (it sent no token while the start-up warning said nothing)."""
    return None if value == "" else value


#: A settings field holding a Consul ACL token; empty is unset.
ConsulToken = Annotated[SecretStr | None, BeforeValidator(unset_if_empty)]
