"""Defaults only local mode (DIALOGUE_ENV=local) may use; both services refuse them otherwise."""

from __future__ import annotations

import ipaddress

from contracts.requests import visible_ascii

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


#: Fewest different characters, and longest run of one character, a secret may have: a
#: random one has many, and runs of 8 are rare (one in 16**7 per place for hex). So "s"*40,
#: 32 spaces, or a key padded with "x" like the end-to-end tests' are refused; they pass
#: a length check and can be guessed.
MIN_DISTINCT, MAX_RUN = 8, 7


def secret_problem(name: str, value: str) -> str | None:
    """Why `value` cannot be the secret `name` outside local mode (or beyond loopback in
    local mode), or None."""
    if not value:
        return f"{name} is not set"
    if value.strip() in LOCAL_SECRETS:
        return f"{name} is a local development default"
    if value != value.strip():
        return f"{name} starts or ends with white space (a copy error?)"
    if len(value.encode()) < MIN_SECRET_BYTES:
        return f"{name} is shorter than {MIN_SECRET_BYTES} bytes"
    if len(set(value)) < MIN_DISTINCT or longest_run(value) > MAX_RUN:
        return (
            f"{name} is not random (fewer than {MIN_DISTINCT} different characters, or one "
            f"repeated more than {MAX_RUN} times in a row): use secrets.token_urlsafe(32)"
        )
    return None


def header_token_problem(name: str, value: str) -> str | None:
    """Why `value` cannot be a token sent in an HTTP `Authorization` header, or None.

    Visible ASCII only (no space): the worker refuses any other byte in the header, and
    HTTP clients encode header values differently past ASCII (found in review: a
    non-ASCII ENTRYPOINT_TOKEN passed both services' settings, and every call of the
    gateway then got 401, every read and write 5030). Never quotes the value."""
    if visible_ascii(value):
        return None
    return (
        f"{name} holds a character that is not visible ASCII (a space, a control "
        "character or a non-ASCII one): it travels in an HTTP header; use "
        "secrets.token_urlsafe(32)"
    )


def longest_run(value: str) -> int:
    """The length of the longest run of one repeated character."""
    longest = run = 0
    previous = None
    for char in value:
        run = run + 1 if char == previous else 1
        previous = char
        longest = max(longest, run)
    return longest


def is_loopback(host: str) -> bool:
    """Whether a bind address is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def refuse_public_bind(variable: str, host: str, why: str) -> None:
    """Local mode with a development or weak secret (`why` says which) binds to loopback
    only."""
    if not is_loopback(host):
        raise ValueError(
            f"{variable}={host!r} with DIALOGUE_ENV=local would serve a weak secret ({why}) "
            "beyond this machine: bind to a loopback address, or set strong secrets"
        )
