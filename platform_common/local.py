"""Defaults only local mode (DIALOGUE_ENV=local) may use; both services refuse them otherwise."""

from __future__ import annotations

import ipaddress

#: The internal token the gateway sends and the workers check (`Authorization: Entrypoint`).
LOCAL_ENTRYPOINT_TOKEN = "local-only-entrypoint-token"
#: The gateway's token signing key and admin bearer token in local mode.
LOCAL_JWT_SECRET = "local-only-jwt-secret-do-not-use-in-production"
LOCAL_ADMIN_TOKEN = "local-only-admin-token"
#: Every development secret: none may stand for any secret outside local mode.
LOCAL_SECRETS = frozenset({LOCAL_JWT_SECRET, LOCAL_ENTRYPOINT_TOKEN, LOCAL_ADMIN_TOKEN})
#: The shortest secret either service accepts outside local mode (256 bits of a random
#: byte string; `secrets.token_urlsafe(32)`, as `make up`'s .env gets, is 43 bytes).
MIN_SECRET_BYTES = 32


def secret_problem(name: str, value: str) -> str | None:
    """Why `value` cannot be the secret `name` outside local mode, or None."""
    if not value:
        return f"{name} is not set"
    if value in LOCAL_SECRETS:
        return f"{name} is a local development default"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"{name} is shorter than {MIN_SECRET_BYTES} bytes"
    return None


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
