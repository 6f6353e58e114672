"""Persisting a batch of records: store the valid ones, dead-letter the rest, retry until done."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from dialogue_worker.domain.records import (
    Accepted,
    InboundRecord,
    Rejected,
    RejectKind,
    Sorted,
    check_membership,
    check_storable,
    decode_all,
    needs_fresh_check,
)
from dialogue_worker.errors import WorkerError
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.health import WorkerHealth
from dialogue_worker.services.membership import MembershipCache
from dialogue_worker.services.ports import DeadLetters, InsertOutcome, MessageStore
from platform_common.retry import Backoff, retry

log = logging.getLogger(__name__)
R = TypeVar("R")
#: Longest exception text kept as a dead-letter reason.
REASON_MAX = 500


@dataclass(frozen=True)
class BatchOutcome:
    stored: int
    duplicates: int
    dead_lettered: int


@dataclass(frozen=True)
class _Stored:
    """What writing some accepted messages came to."""

    inserted: int = 0
    duplicates: int = 0
    refused: tuple[Rejected, ...] = ()

    def __add__(self, other: _Stored) -> _Stored:
        return _Stored(
            self.inserted + other.inserted,
            self.duplicates + other.duplicates,
            self.refused + other.refused,
        )


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:REASON_MAX]


class BatchPersister:
    """Called by the agent with each batch; returns only once the whole batch is durable.

    While MongoDB or the DLQ topic fail, it retries with exponential backoff (never
    giving up: the caller commits nothing meanwhile) and reports the failure to health.
    A write that fails for any other reason is about the records: the batch is halved
    until the record(s) it is about are found, and those are dead-lettered once a plain
    write shows the store itself is fine; the rest is stored. No record holds a partition.
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
        batch = check_storable(decode_all(records), self._store.unstorable)
        return await self._retry("membership", lambda: self._with_members(batch))

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
        written = await self._store_all(batch.accepted) if batch.accepted else _Stored()
        self._metrics.persisted.inc(written.inserted)
        self._metrics.duplicates.inc(written.duplicates)
        rejected = [*batch.rejected, *written.refused]
        if rejected:
            await self._retry("dead-letter", lambda: self._dead_letters.send(rejected))
            for item in rejected:
                self._metrics.dead_letters.labels(item.kind.value).inc()
                if item.kind is RejectKind.ID_CONFLICT:
                    self._metrics.id_conflicts.inc()
                log.warning(
                    "record dead-lettered: %s",
                    item.reason,
                    extra={
                        "topic": item.record.topic,
                        "partition": item.record.partition,
                        "offset": item.record.offset,
                        "reason": item.kind.value,
                    },
                )
        return BatchOutcome(written.inserted, written.duplicates, len(rejected))

    async def _store_all(self, items: Sequence[Accepted]) -> _Stored:
        """Write the messages; a non-transient failure is narrowed down by halving."""
        try:
            outcome = await self._retry("write", lambda: self._insert(items))
        except Exception as exc:  # not transient (those are retried): about some record(s)
            if len(items) == 1:
                return await self._confirm_refusal(items[0], _reason(exc))
            log.warning("batch write refused, halving %d records: %s", len(items), _reason(exc))
            middle = len(items) // 2
            return await self._store_all(items[:middle]) + await self._store_all(items[middle:])
        written = _Stored(outcome.inserted, outcome.duplicates)
        for index, (kind, reason) in sorted(outcome.refused.items()):
            if kind is RejectKind.UNSTORABLE:
                written += await self._confirm_refusal(items[index], reason)
            else:
                written += _Stored(refused=(Rejected(items[index].record, kind, reason),))
        return written

    async def _confirm_refusal(self, item: Accepted, why: str) -> _Stored:
        """Try the record alone once a plain write succeeds; dead-letter it if still refused.

        So a store that refuses everything (its backend is down behind a healthy
        front) holds the batch, as an outage should, instead of emptying it into the DLQ.
        """
        await self._retry("write check", self._store.writable)
        try:
            outcome = await self._retry("write", lambda: self._insert([item]))
        except Exception as exc:  # refused again with the store writable: this record
            return _Stored(refused=(Rejected(item.record, RejectKind.UNSTORABLE, _reason(exc)),))
        if outcome.refused:
            kind, reason = outcome.refused[0]
            return _Stored(refused=(Rejected(item.record, kind, reason),))
        log.info(
            "record refused once, then stored: %s", why if isinstance(why, str) else _reason(why)
        )
        return _Stored(outcome.inserted, outcome.duplicates)

    async def _insert(self, items: Sequence[Accepted]) -> InsertOutcome:
        return await self._store.insert_messages([item.message for item in items])

    async def _retry(self, step: str, attempt: Callable[[], Awaitable[R]]) -> R:
        """`attempt` until it succeeds; retryable WorkerErrors are reported and waited out."""

        def report(exc: Exception, delay: float) -> None:
            self._health.failing(f"{step} failing: {exc}")
            self._metrics.retries.labels(step).inc()
            log.warning("%s failed, retrying in %.1fs: %s", step, delay, exc)

        return await retry(
            attempt,
            retry_on=lambda exc: isinstance(exc, WorkerError) and exc.retryable,
            backoff=self._backoff(),  # a fresh sequence for each failing step
            on_failure=report,
            sleep=self._sleep,
        )
