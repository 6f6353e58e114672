"""How much memory the gateway's Idempotency-Key entries really take, against the
estimate IDEMPOTENCY_MAX_BYTES is held to (gateway/domain/idempotency.py).

    .venv/bin/python -m bench.idempotency_bench [--users-keys 100000x1 1000x100 100x1000]

Prints, for each shape (users x keys per user, 32-character keys), the bytes tracemalloc
counts per entry, the estimate per entry and their ratio: below 1 the bound holds.
Pure Python, no service."""

from __future__ import annotations

import argparse
import secrets
import tracemalloc
from collections.abc import Sequence

from gateway.domain.idempotency import Attempt, IdempotencyCache


def shape(raw: str) -> tuple[int, int]:
    users, x, keys = raw.partition("x")
    if not x or not (users.isascii() and users.isdigit() and keys.isascii() and keys.isdigit()):
        raise argparse.ArgumentTypeError(f"expected USERSxKEYS such as 1000x100, got {raw!r}")
    if not (1 <= int(users) <= 1_000_000 and 1 <= int(keys) <= 10_000):
        raise argparse.ArgumentTypeError("users 1..1,000,000 and keys 1..10,000")
    return int(users), int(keys)


def measure(users: int, keys: int) -> tuple[float, float]:
    """(traced bytes, estimated bytes) per entry."""
    cache = IdempotencyCache(3600, 10**9, 10**12, 10**6)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for uid in range(1, users + 1):
        for _ in range(keys):
            attempt = Attempt(secrets.token_hex(12), 1_700_000_000, secrets.token_bytes(32), False)
            cache.record(uid, secrets.token_hex(16), attempt, 0.0)
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    entries = users * keys
    return traced / entries, cache.bytes / entries


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--users-keys", type=shape, nargs="+", default=[(100_000, 1), (1000, 100), (100, 1000)]
    )
    args = parser.parse_args(argv)
    print("users x keys     traced/entry  estimated/entry  traced/estimated")
    for users, keys in args.users_keys:
        traced, estimated = measure(users, keys)
        ratio = traced / estimated
        print(f"{users:>7} x {keys:<6} {traced:>12.0f} B {estimated:>14.0f} B {ratio:>17.2f}")


if __name__ == "__main__":
    main()
