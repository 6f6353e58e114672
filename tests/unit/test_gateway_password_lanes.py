"""Argon2Hasher's lanes, with real argon2 at a low cost: new hashes (sign-ups) cannot
hold sign-in checks behind them, and a flood of them is refused, not queued for ever."""

from __future__ import annotations

import asyncio

import pytest

from contracts.errors import ErrorCode
from gateway.adapters.passwords import HASHES_WAITING_MAX, Argon2Hasher
from gateway.errors import GatewayError
from tests.support.waiting import settle


def _hasher() -> Argon2Hasher:
    return Argon2Hasher(time_cost=1, memory_kib=8 * 1024, parallelism=1, concurrency=4)


async def test_a_sign_in_check_is_not_held_behind_queued_sign_ups() -> None:
    """With one first-come queue, a check waited for every hash queued before it (found
    in review: 400 queued sign-ups made a sign-in wait 4.4 s). New hashes take at most
    half the slots, so a check starts at once: it ends while nearly all still wait."""
    hasher = _hasher()
    stored = await hasher.hash("password1")
    done: list[int] = []

    async def sign_up(n: int) -> None:
        await hasher.hash(f"password-{n}")
        done.append(n)

    burst = [asyncio.create_task(sign_up(n)) for n in range(HASHES_WAITING_MAX)]
    await settle()  # every sign-up of the burst is queued before the check
    assert await hasher.verify(stored, "password1")
    assert len(done) <= 4, done  # the two running, and at most a pair more meanwhile
    await asyncio.gather(*burst)
    assert sorted(done) == list(range(HASHES_WAITING_MAX))


async def test_new_hashes_past_the_bound_are_told_to_come_back() -> None:
    hasher = _hasher()
    lane = 2  # half the four slots
    admitted = [asyncio.create_task(hasher.hash("pw")) for _ in range(lane + HASHES_WAITING_MAX)]
    await settle()
    with pytest.raises(GatewayError) as refused:
        await hasher.hash("one too many")
    assert refused.value.code is ErrorCode.TOO_MANY_ATTEMPTS
    assert refused.value.headers == {"Retry-After": "1"}
    urgent = await hasher.hash("the decoy", urgent=True)  # never refused
    assert urgent.startswith("$argon2id$")
    await asyncio.gather(*admitted)
    await hasher.hash("room again")  # the bound counts what waits now, not what waited
