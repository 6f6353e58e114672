"""argon2id password hashing, run in worker threads so the event loop never stalls."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.services.limits import too_many

#: New hashes (sign-ups, upgrades at sign-in) that may wait for their lane; past this a
#: sign-up is told to come back (4290) rather than queue without end.
HASHES_WAITING_MAX = 32


class Argon2Hasher:
    """Hashes with argon2id; at most `concurrency` hashes run at once (each uses memory).

    New hashes take at most half the slots (at least one), and at most
    HASHES_WAITING_MAX wait for them: sign-ups come from anyone, at a rate limited per
    address only, and with one first-come queue a flood of them from many addresses
    held every sign-in's check behind it for as long as it lasted (found in review,
    2026-12-08: 400 sign-ups queued made a sign-in wait 4.4 s, growing without bound).
    Checks of sign-ins always find the other slots."""

    def __init__(
        self, time_cost: int, memory_kib: int, parallelism: int, concurrency: int = 4
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        self._slots = asyncio.Semaphore(concurrency)
        self._new_hashes_max = max(1, concurrency // 2)
        self._new_hashes = asyncio.Semaphore(self._new_hashes_max)
        self._waiting = 0  # new hashes waiting for, or holding, their lane

    async def hash(self, password: str, *, urgent: bool = False) -> str:
        """The password's hash. A 4290 when HASHES_WAITING_MAX new hashes already wait;
        `urgent` (the decoy that unknown names are checked against) skips the lane."""
        if urgent:
            async with self._slots:
                return await asyncio.to_thread(self._hasher.hash, password)
        if self._waiting >= HASHES_WAITING_MAX + self._new_hashes_max:
            raise too_many("too many passwords being hashed on this server", 1)
        self._waiting += 1
        try:
            async with self._new_hashes, self._slots:
                return await asyncio.to_thread(self._hasher.hash, password)
        finally:
            self._waiting -= 1

    async def verify(self, password_hash: str, password: str) -> bool:
        async with self._slots:
            return await asyncio.to_thread(self._verify, password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """Made weaker than the current settings (ARGON2_* raised since, or another argon2
        variant): rehash at the next sign-in. Never to weaken one: lowering the settings
        keeps the stored hashes, and two gateways whose settings differ during a rollout
        do not rewrite each other's hashes at every sign-in."""
        try:
            stored = extract_parameters(password_hash)
        except InvalidHashError:
            return False
        current = self._hasher
        if stored.type != current.type:
            return True
        costs = (
            (stored.time_cost, current.time_cost),
            (stored.memory_cost, current.memory_cost),
        )
        weaker = any(had < wanted for had, wanted in costs)
        stronger = any(had > wanted for had, wanted in costs)
        return weaker and not stronger

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
