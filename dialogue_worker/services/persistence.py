"""Persisting a batch of records: store the valid ones, dead-letter the rest, retry until done."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from dialogue_worker.domain.records import (
    InboundRecord,
    Sorted,
    check_membership,
    decode_all,
    needs_fresh_check,
)
from dialogue_worker.errors import WorkerError
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.health import WorkerHealth
from dialogue_worker.services.membership import MembershipCache
from dialogue_worker.services.ports import DeadLetters, MessageStore
from discovery import Backoff

log = logging.getLogger(__name__)
R = TypeVar("R")


@dataclass(frozen=True)
class BatchOutcome:
    stored: int
    duplicates: int
    dead_lettered: int


class BatchPersister:
    """Called by the agent with each batch; returns only once the whole batch is durable.

    While MongoDB or the DLQ topic fail, it retries with exponential backoff (never
    giving up: the caller commits nothing meanwhile) and reports the failure to health.
    """

    def __init__(
        self,
        store: MessageStore,
        dead_letters: DeadLetters,
        members: MembershipCache,
        health: WorkerHealth,
        metrics: WorkerMetrics,
        *,
        backoff: Callable[[], Backoff] = Backoff,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        next_offsets: dict[tuple[str, int], int] | None = None,
    ) -> None:
        self._store = store
        self._dead_letters = dead_letters
        self._members = members
        self._health = health
        self._metrics = metrics
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._next_offsets = {} if next_offsets is None else next_offsets
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False

    @property
    def next_offsets(self) -> Mapping[tuple[str, int], int]:
        """Per (topic, partition): the offset after the last record made durable."""
        return self._next_offsets

    async def sort(self, records: Sequence[InboundRecord]) -> Sorted:
        """Decode and check membership: what `persist` will store and what it dead-letters.

        The agent calls this while the previous batch is still being written.
        """
        return await self._retry("membership", lambda: self._with_members(decode_all(records)))

    async def persist(
        self, records: Sequence[InboundRecord], sorted_batch: Sorted | None = None
    ) -> BatchOutcome:
        """Store the batch (sorted by `sort`, or here when not given) and dead-letter the rest."""
        if self._draining:
            await asyncio.Event().wait()  # shutting down: take nothing new; cancelled by faust
        self._idle.clear()
        started = self._clock()
        try:
            batch = sorted_batch if sorted_batch is not None else await self.sort(records)
            outcome = await self._write(batch)
        finally:
            self._idle.set()
        for record in records:
            key = (record.topic, record.partition)
            self._next_offsets[key] = max(self._next_offsets.get(key, 0), record.offset + 1)
        self._health.progressed()
        self._metrics.batch_seconds.observe(self._clock() - started)
        return outcome

    async def drain(self, grace: float) -> bool:
        """Stop taking batches; wait up to `grace` s for the one in hand. True if none is left."""
        self._draining = True
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def _with_members(self, batch: Sorted) -> Sorted:
        members = self._members.known(batch.chat_ids)
        recheck = needs_fresh_check(batch, members)
        if recheck:
            fresh = await self._store.chat_members(recheck)
            self._members.remember(fresh)
            members = {c: u for c, u in members.items() if c not in recheck} | fresh
        return check_membership(batch, members)

    async def _write(self, batch: Sorted) -> BatchOutcome:
        stored = duplicates = 0
        if batch.accepted:
            messages = [a.message for a in batch.accepted]
            result = await self._retry("write", lambda: self._store.insert_messages(messages))
            stored, duplicates = result.inserted, result.duplicates
            self._metrics.persisted.inc(stored)
            self._metrics.duplicates.inc(duplicates)
        if batch.rejected:
            await self._retry("dead-letter", lambda: self._dead_letters.send(batch.rejected))
            for rejected in batch.rejected:
                self._metrics.dead_letters.labels(rejected.kind.value).inc()
                log.warning(
                    "record dead-lettered: %s",
                    rejected.reason,
                    extra={
                        "topic": rejected.record.topic,
                        "partition": rejected.record.partition,
                        "offset": rejected.record.offset,
                        "reason": rejected.kind.value,
                    },
                )
        return BatchOutcome(stored, duplicates, len(batch.rejected))

    async def _retry(self, step: str, attempt: Callable[[], Awaitable[R]]) -> R:
        next_delay = self._backoff().next_delay  # a fresh sequence for each failing step
        while True:
            try:
                return await attempt()
            except WorkerError as exc:
                if not exc.retryable:
                    raise
                delay = next_delay()
                self._health.failing(f"{step} failing: {exc}")
                self._metrics.retries.labels(step).inc()
                log.warning("%s failed, retrying in %.1fs: %s", step, delay, exc)
                await self._sleep(delay)
