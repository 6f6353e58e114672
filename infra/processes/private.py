"""Private copies of infrastructure services, for tests that stop, kill or isolate them.

The shared services (the `infra` fixture) are never stopped by a test; a test that needs
to kill Consul, Kafka or FerretDB, or a Consul no other worker registers in, starts its
own copy here with the project's infra code, on free ports, under a temporary run folder.

A private FerretDB stores in the shared PostgreSQL cluster, in a database of its own
(created with FerretDB's triggers, dropped afterwards), not in a private cluster: killing
it ends only its own connections, so nothing else notices, and a copy starts in about a
second instead of initialising a cluster (which the `postgres` OS user could not do under
pytest's private tmp folders anyway). A test that kills PostgreSQL itself would ask for
["postgres", "ferretdb"] with a LOCAL_POSTGRES_PORT and a run folder that user can reach.
"""

from __future__ import annotations

import contextlib
import random
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from infra.local import LocalSettings, Stack

#: Offsets from LOCAL_CONSUL_BASE_PORT that Consul listens on (server, serf LAN/WAN,
#: DNS, gRPC, gRPC TLS), as infra.local.consul sets them.
CONSUL_OFFSETS = (0, 1, 2, 100, 202, 203)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing holds this port for TCP or UDP right now."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


#: Where private services listen when the kernel's ephemeral range leaves no room below it.
_FALLBACK_PORTS = (20000, 60000)


def _ephemeral_low() -> int:
    """The first port the kernel hands to outgoing connections (Linux default 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def listen_base(span: int) -> int:
    """A random first port of `span` ports that lie below the ephemeral range.

    A port picked inside that range can be taken by any outgoing connection between the
    pick and the service's bind, and a client that keeps retrying a killed broker there can
    connect to itself (a TCP self-connect) and hold the port, so the broker cannot come
    back on it. Ports below the range are never handed out that way.
    """
    low, high = 10000, _ephemeral_low() - span
    if high <= low:
        low, high = _FALLBACK_PORTS[0], _FALLBACK_PORTS[1] - span
    return random.randrange(low, high)


def free_port() -> int:
    """A port nothing holds right now, below the ephemeral range."""
    return free_range(1)


def free_range(count: int) -> int:
    """The first of `count` consecutive free ports, below the ephemeral range."""
    for _ in range(100):
        base = listen_base(count)
        if all(port_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


def consul_ports() -> tuple[int, int]:
    """(HTTP port, base port) with every port a Consul agent needs free."""
    for _ in range(100):
        base = listen_base(max(500, *CONSUL_OFFSETS) + 1)
        http = base + 500
        if all(port_is_free(p) for p in (http, *(base + o for o in CONSUL_OFFSETS))):
            return http, base
    raise RuntimeError("no free port range for a private Consul agent")


@contextlib.contextmanager
def private_stack(
    run_dir: Path, cache_dir: Path, services: list[str], env: dict[str, str]
) -> Iterator[Stack]:
    """Start `services` from a Stack configured by `env` (LOCAL_* variables); stop them after.

    With "ferretdb" (and not "postgres"), FerretDB gets a database of its own in the
    shared PostgreSQL cluster, dropped when the copy stops.
    """
    base = {"LOCAL_RUN_DIR": str(run_dir), "LOCAL_CACHE_DIR": str(cache_dir)}
    own_database = None
    if "ferretdb" in services and "postgres" not in services:
        shared = LocalSettings.from_env()  # the cluster the `infra` fixture runs
        own_database = f"ferretdb_{uuid.uuid4().hex[:12]}"
        base |= {
            "LOCAL_POSTGRES_RUN_DIR": str(shared.postgres_run_dir),
            "LOCAL_POSTGRES_PORT": str(shared.postgres_port),
            "LOCAL_POSTGRES_PASSWORD": shared.postgres_password,
            "LOCAL_FERRETDB_DATABASE": own_database,
        }
    settings = LocalSettings.from_env(base | env)
    stack = Stack(settings)
    try:
        stack.up(services)  # the shared postgres is only checked (started if it is not)
        try:
            yield stack
        finally:
            stack.down(services)  # never "postgres": the shared cluster keeps running
    finally:
        if own_database is not None and settings.ferretdb_database == own_database:
            stack.postgres.drop_database(own_database)


@contextlib.contextmanager
def private_consul(run_dir: Path, cache_dir: Path) -> Iterator[Stack]:
    """A Consul dev agent of our own (its URL: stack.settings.consul_url)."""
    http, base = consul_ports()
    env = {"LOCAL_CONSUL_PORT": str(http), "LOCAL_CONSUL_BASE_PORT": str(base)}
    with private_stack(run_dir, cache_dir, ["consul"], env) as stack:
        yield stack
