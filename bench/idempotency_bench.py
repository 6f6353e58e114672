"""How much memory the gateway's Idempotency-Key entries really take, against the
estimate IDEMPOTENCY_MAX_BYTES is held to (gateway/domain/idempotency.py).

    .venv/bin/python -m bench.idempotency_bench [--users-keys 100000x1 1000x100 100x1000]
        [--rounds 3]

Prints, for each shape (users x keys per user, 32-character keys), the bytes tracemalloc
counts per entry, the estimate per entry and their ratio: below 1 the bound holds. Twice:
for a cache filled once, and for one held at its bound while `--rounds` times as many
posts again go through it, each key recorded as sent and then as acknowledged, as the
gateway does (the oldest entries evicted; the dicts' deleted slots count too). Pure
Python, no service."""

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


def measure_churn(users: int, keys: int, rounds: int) -> tuple[float, float]:
    """(traced bytes, estimated bytes) per entry of a cache held at users x keys entries
    while rounds x as many posts go through it."""
    entries = users * keys
    cache = IdempotencyCache(3600, entries, 10**12, keys)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for n in range((rounds + 1) * entries):
        uid = 1 + n % users
        key = secrets.token_hex(16)
        attempt = Attempt(secrets.token_hex(12), 1_700_000_000, secrets.token_bytes(32), False)
        cache.record(uid, key, attempt, 0.0)
        cache.record(
            uid, key, Attempt(attempt.message_id, 1_700_000_000, attempt.digest, True), 0.0
        )
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return traced / entries, cache.bytes / entries


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--users-keys", type=shape, nargs="+", default=[(100_000, 1), (1000, 100), (100, 1000)]
    )
    parser.add_argument("--rounds", type=int, default=3, choices=range(1, 101), metavar="1..100")
    args = parser.parse_args(argv)
    print("users x keys     traced/entry  estimated/entry  traced/estimated")
    for title, run in (
        ("filled once", measure),
        (f"held at the bound, {args.rounds} rounds", lambda u, k: measure_churn(u, k, args.rounds)),
    ):
        print(title)
        for users, keys in args.users_keys:
            traced, estimated = run(users, keys)
            ratio = traced / estimated
            print(f"{users:>7} x {keys:<6} {traced:>12.0f} B {estimated:>14.0f} B {ratio:>17.2f}")


if __name__ == "__main__":
    main()
