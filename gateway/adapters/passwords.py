"""argon2id password hashing, run in worker threads so the event loop never stalls."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError


class Argon2Hasher:
    """Hashes with argon2id; at most `concurrency` hashes run at once (each uses memory)."""

    def __init__(
        self, time_cost: int, memory_kib: int, parallelism: int, concurrency: int = 4
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        self._slots = asyncio.Semaphore(concurrency)

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

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
