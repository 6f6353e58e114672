"""Defaults only local mode (DIALOGUE_ENV=local) may use; both services refuse them otherwise."""

from __future__ import annotations

import ipaddress

#: The internal token the gateway sends and the workers check (`Authorization: Entrypoint`).
LOCAL_ENTRYPOINT_TOKEN = "local-only-entrypoint-token"


def is_loopback(host: str) -> bool:
    """Whether a bind address is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def refuse_public_bind(variable: str, host: str) -> None:
    """Local mode runs on public development secrets: it binds to loopback only."""
    if not is_loopback(host):
        raise ValueError(
            f"{variable}={host!r} with DIALOGUE_ENV=local would serve the public development "
            "secrets beyond this machine: bind to a loopback address, or set the secrets and "
            "DIALOGUE_ENV=production"
        )
