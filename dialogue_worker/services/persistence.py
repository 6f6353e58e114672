"""Persisting a batch: sequence and store the valid records, dead-letter or forward the rest.

Per batch, in this order, so a crash at any point is repaired by the redelivery:
0. records that came after a hole in their partition are held back (services.ordering);
1. refused records go to the dead-letter topic, misplaced ones to their chat's partition;
2. each chat's records get their seqs (domain.sequencing) and are stored: their ids
   first (`message_ids`, a unique key per id), then the messages (a unique key per seq).
   Planning runs in rounds: ids the store knows are looked up, chats whose state is
   stale are read again, and records whose seqs another writer took are planned again
   after what stands (nothing stored is removed: another writer may have counted it).
   An entry another attempt left at a free seq above the chat holds that seat (that
   attempt may be alive and store its message there); one moves off a seq only once
   another message holds it, so no message is ever stored at two seqs.
   Id conflicts are dead-lettered once the batch is settled (step 3);
3. each chat's newest seq, activity and preview are recorded: its new messages' `at` and
   its `lastAt` are one reading of the clock; messages an attempt stored but did not
   count (it died, or stopped) are counted by the next batch that repeats them or
   stores after them, stamped with the moment they are counted, when they begin to show;
4. `message.created` is published for every record stored or repeated (not for those
   dead-lettered, forwarded or held back).
Only then are the batch's offsets marked durable (domain.offsets), so they may be committed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from contracts.events import EventMessage, MessageCreated
from dialogue_worker.domain.chats import preview
from dialogue_worker.domain.messages import MessageView
from dialogue_worker.domain.offsets import DurableOffsets
from dialogue_worker.domain.records import (
    Accepted,
    InboundRecord,
    Rejected,
    RejectKind,
    Sorted,
    check_membership,
    check_partition,
    check_storable,
    decode_all,
)
from dialogue_worker.domain.sequencing import (
    ChatPlan,
    ChatState,
    Known,
    Placed,
    conflict_reason,
    first_copies,
    like_first,
    plan_chat,
    same_content,
    text_digest,
)
from dialogue_worker.errors import (
    OutboxUnavailable,
    StorageUnavailable,
    StoreRefused,
    WorkerError,
)
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.chat_book import ChatBook
from dialogue_worker.services.health import WorkerHealth
from dialogue_worker.services.ordering import PartitionOrder, in_partition_order
from dialogue_worker.services.ports import (
    ChatAdvance,
    IdEntry,
    MessageStore,
    Outbox,
    StoredMessage,
)
from platform_common.logs import clip, partition_fields
from platform_common.retry import Backoff, retry

log = logging.getLogger(__name__)
R = TypeVar("R")
#: Longest exception text kept as a dead-letter reason.
REASON_MAX = 500
#: Rounds of planning a batch's seqs against what the store reports before pausing and
#: starting over (step "sequence"): ids stored already, left-overs of a crash, seqs taken
#: by another owner.
ROUNDS = 6


@dataclass(frozen=True)
class BatchOutcome:
    stored: int
    duplicates: int
    dead_lettered: int


@dataclass(frozen=True)
class _Stored:
    """What writing some accepted records came to."""

    inserted: int = 0
    duplicates: int = 0
    refused: int = 0

    def __add__(self, other: _Stored) -> _Stored:
        return _Stored(
            self.inserted + other.inserted,
            self.duplicates + other.duplicates,
            self.refused + other.refused,
        )


@dataclass
class _Count:
    """What a chat's document must count after a batch: up to `newest`, the newest
    message the batch stored or repeated (never past the chat's state, which is gap-free),
    with `state` behind it. Seqs above `counted` up to `newest` that the batch did not
    store itself (`new_seqs`) were stored before and not counted: they are stamped."""

    cid: str
    newest: Placed
    state: ChatState
    new_seqs: frozenset[int]
    counted: int | None = None  # what the chat's document counts, once known

    @classmethod
    def of(cls, cid: str, chat: ChatPlan, repeats: Iterable[Placed]) -> _Count | None:
        """`repeats`: the batch's repeats of this chat (copies inside the batch too).
        Only what stands without a gap below it counts (a seat held above a free seq
        waits until the gap is filled)."""
        placed = [p for p in [*chat.new, *repeats] if p.seq <= chat.state.last_seq]
        if not placed:
            return None
        newest = max(placed, key=lambda p: p.seq)
        r = newest.item.record
        state = (
            chat.state
            if newest.seq == chat.state.last_seq
            else ChatState(newest.seq, r.partition, r.offset)
        )
        return cls(cid, newest, state, frozenset(p.seq for p in chat.new))

    def left_over_above(self, counted: int) -> bool:
        """Whether a seq above `counted` up to `newest` was stored before this batch."""
        above = self.newest.seq - counted
        return above > 0 and above > sum(1 for seq in self.new_seqs if seq > counted)

    def needs_advance(self) -> bool:
        return self.counted is not None and self.newest.seq > self.counted

    def leftovers(self) -> list[int]:
        """Seqs to stamp (only once `counted` is known)."""
        assert self.counted is not None
        return [
            seq for seq in range(self.counted + 1, self.newest.seq + 1) if seq not in self.new_seqs
        ]

    def advance(self, at: float) -> ChatAdvance:
        m = self.newest.item.message
        last = preview(m.id, self.newest.seq, m.uid, m.text, m.createdAt)
        return ChatAdvance(self.cid, self.state, at, last)


@dataclass
class _Round:
    """One round of planning: every chat's plan, and the batch's copies resolved."""

    plans: dict[str, ChatPlan]
    repeats: list[Placed] = field(default_factory=list)
    conflicts: list[tuple[Accepted, str]] = field(default_factory=list)

    @property
    def new(self) -> list[Placed]:
        return [p for plan in self.plans.values() for p in plan.new]


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:REASON_MAX]


def _where(record: InboundRecord) -> dict[str, object]:
    return partition_fields(record.topic, record.partition, record.offset)


def partition_offsets(records: Iterable[InboundRecord]) -> dict[tuple[str, int], list[int]]:
    """Each topic/partition's offsets among `records`, in the records' order."""
    offsets: dict[tuple[str, int], list[int]] = defaultdict(list)
    for record in records:
        offsets[(record.topic, record.partition)].append(record.offset)
    return offsets


class BatchPersister:
    """Called by the agent with each batch; returns only once the whole batch is durable.

    While MongoDB or Kafka fail, it retries with exponential backoff (never giving up:
    the caller commits nothing meanwhile) and reports the failure to health. A write
    that fails for any other reason is about the records: the batch is halved until the
    record(s) it is about are found, and those are dead-lettered once a plain write shows
    the store itself is fine; the rest is stored. No record holds a partition.
    """

    def __init__(
        self,
        store: MessageStore,
        outbox: Outbox,
        book: ChatBook,
        health: WorkerHealth,
        metrics: WorkerMetrics,
        *,
        backoff: Callable[[], Backoff] = Backoff,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        ledger: DurableOffsets | None = None,
        order: PartitionOrder | None = None,
    ) -> None:
        self._store = store
        self._outbox = outbox
        self._book = book
        self._health = health
        self._metrics = metrics
        self._backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._ledger = DurableOffsets() if ledger is None else ledger
        self._order = order
        self._partition_of: Callable[[str], int] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False

    @property
    def ledger(self) -> DurableOffsets:
        """Per partition, the offsets made durable (what the committer may commit)."""
        return self._ledger

    def route(self, partition_of: Callable[[str], int]) -> None:
        """The partition each chat's records belong on (known once the topic is described)."""
        self._partition_of = partition_of

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """Another worker owns these now: the chats' sequence states may move on."""
        self._book.forget_partitions(set(partitions))

    async def sort(self, records: Sequence[InboundRecord]) -> Sorted:
        """Decode, route and check membership: what `persist` stores, forwards, dead-letters.

        The agent calls this while the previous batch is still being written.
        """
        batch = check_storable(decode_all(records), self._store.unstorable)
        if self._partition_of is not None:
            batch = check_partition(batch, self._partition_of)
        # A chat read by its validated id is about no record: a refusal there is the
        # store's state (PostgreSQL gone behind FerretDB), waited out like an outage. It
        # used to escape the agent, which faust restarted, dropping two batches each time.
        return await self._retry("membership", lambda: self._with_members(batch), refusals_too=True)

    async def persist(
        self, records: Sequence[InboundRecord], sorted_batch: Sorted | None = None
    ) -> BatchOutcome:
        """Make the batch durable (sorted by `sort`, or here when not given)."""
        if self._draining:
            await asyncio.Event().wait()  # shutting down: take nothing new; cancelled by faust
        self._idle.clear()
        started = self._clock()
        try:
            if self._order is not None:
                admitted = await self._order.admit(records)
                if len(admitted) != len(records) or not in_partition_order(records):
                    records, sorted_batch = admitted, None  # held back, or put in order
            batch = sorted_batch if sorted_batch is not None else await self.sort(records)
            await self._dead_letter(batch.rejected)
            if batch.forward:
                await self._retry("forward", lambda: self._outbox.forward(batch.forward))
                self._metrics.forwarded.inc(len(batch.forward))
            written = (
                await self._store_all(batch.accepted, uuid.uuid4().hex[:16])
                if batch.accepted
                else _Stored()
            )
        finally:
            self._idle.set()
        self._metrics.persisted.inc(written.inserted)
        self._metrics.duplicates.inc(written.duplicates)
        for tp, durable in partition_offsets(records).items():
            self._ledger.mark(tp, durable)
        self._health.progressed()
        self._metrics.batch_seconds.observe(self._clock() - started)
        return BatchOutcome(
            written.inserted, written.duplicates, len(batch.rejected) + written.refused
        )

    async def drain(self, grace: float) -> bool:
        """Stop taking batches; wait up to `grace` s for the one in hand. True if none is left."""
        self._draining = True
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    # --- sorting -------------------------------------------------------------------

    async def _with_members(self, batch: Sorted) -> Sorted:
        wanted: dict[str, set[int]] = defaultdict(set)
        for item in batch.accepted:
            wanted[item.message.cid].add(item.message.uid)
        return check_membership(batch, await self._book.members(wanted))

    # --- writing: narrowing down what the store refuses ----------------------------

    async def _store_all(self, items: Sequence[Accepted], writer: str) -> _Stored:
        """Write the records; a non-transient failure is narrowed down by halving.
        `writer`: what this batch's id entries are written as, in every attempt of it."""
        try:
            # Seqs that did not settle (StorageUnavailable) are planned again after a pause.
            return await self._retry("sequence", partial(self._write, items, writer))
        except Exception as exc:  # not transient (those are retried): about some record(s)
            if len(items) == 1:
                return await self._confirm_refusal(items[0], _reason(exc), writer)
            why = _reason(exc)
            for (topic, partition), offsets in partition_offsets(i.record for i in items).items():
                log.warning(
                    "batch write refused, halving %d records (here offsets %d..%d): %s",
                    len(items),
                    min(offsets),
                    max(offsets),
                    why,
                    extra=partition_fields(topic, partition, min(offsets)),
                )
            middle = len(items) // 2
            return await self._store_all(items[:middle], writer) + await self._store_all(
                items[middle:], writer
            )

    async def _confirm_refusal(self, item: Accepted, why: str, writer: str) -> _Stored:
        """Try the record alone once a plain write succeeds; dead-letter it if still refused.

        So a store that refuses everything (its backend is down behind a healthy front)
        holds the batch, as an outage should, instead of emptying it into the DLQ.
        """
        await self._retry("write check", self._store.writable)
        try:
            written = await self._retry("sequence", partial(self._write, [item], writer))
        except Exception as exc:  # refused again with the store writable: this record
            await self._dead_letter([Rejected(item.record, RejectKind.UNSTORABLE, _reason(exc))])
            return _Stored(refused=1)
        log.info("record refused once, then stored: %s", why, extra=_where(item.record))
        return written

    # --- writing: sequencing -------------------------------------------------------

    async def _write(self, items: Sequence[Accepted], writer: str) -> _Stored:
        firsts, copies = first_copies(items)
        groups: dict[str, list[Accepted]] = defaultdict(list)
        for item in firsts:
            groups[item.message.cid].append(item)
        self._book.bound()
        known: dict[str, Known | None] = {}
        reloaded: set[str] = set()
        for _ in range(ROUNDS):
            # Also each round: a chat forgotten meanwhile (its partition revoked) is read
            # again, never planned from an empty state.
            await self._retry("chat states", partial(self._book.ensure, list(groups)))
            plan = self._plan(groups, copies, known, writer)
            look_up = {i.message.id for p in plan.plans.values() for i in p.unresolved}
            if look_up:  # records passed before: were they stored, and under which seq?
                found = await self._retry("look-up", partial(self._store.known, look_up))
                known |= dict.fromkeys(look_up) | found
                continue
            # A stored message (not one this round places) above its chat's state: the
            # state is stale (another writer, or an attempt that died, stored it); read
            # the chat again, once per write.
            placed_now = {p.item.message.id for p in plan.new}
            ahead = {
                p.item.message.cid
                for p in plan.repeats
                if p.item.message.id not in placed_now
                and p.seq > self._book.state(p.item.message.cid).last_seq
            } - reloaded
            if ahead:
                reloaded |= ahead
                await self._retry("chat states", partial(self._book.reload, ahead))
                continue
            claims = {mid for p in plan.plans.values() for mid in p.claims}
            entries = [self._id_entry(p, writer, known.get(p.item.message.id)) for p in plan.new]
            fresh = [e for e in entries if e.id not in claims]
            taken = await self._retry("write", partial(self._store.claim, fresh))
            # Entries written now: a round planned again rewrites them, not looks them up.
            _wrote(known, [e for e in fresh if e.id not in taken])
            if taken:  # stored already (a copy, or a crashed attempt): look, then plan again
                known |= await self._retry("look-up", partial(self._store.known, taken))
                continue
            left_over = [e for e in entries if e.id in claims]
            # (each is a claim: its entry is known)
            was = {e.id: entry for e in left_over if (entry := known.get(e.id))}
            # An entry left over at a seq this round fills with another message moves only
            # once that message is stored there: the attempt that wrote the entry may be
            # alive (the partition's previous owner) and store its message at that seq yet.
            seats = {(p.item.message.cid, p.seq) for p in plan.new}
            later = [
                e for e in left_over if was[e.id].seq != e.seq and (e.cid, was[e.id].seq) in seats
            ]
            held = {e.id for e in later}
            if await self._take_over([e for e in left_over if e.id not in held], was, known):
                continue
            # One reading of the clock, as late as it can be: the messages' `at` and their
            # chats' `lastAt` are the same number, as the chat list's look-backs expect.
            now = self._wall_clock()
            messages = [self._message(p, now) for p in plan.new]
            first = [m for m in messages if m.id not in held]
            taken_seqs = await self._append(first) if first else {}
            sent = first
            if not taken_seqs and later:
                if await self._take_over(later, was, known):
                    await self._stored_part(plan, first, known, writer)
                    continue
                taken_seqs = await self._append([m for m in messages if m.id in held])
                sent = messages
            if taken_seqs:  # another writer gave out some of these seqs
                _log_taken([p.item for p in plan.new if p.item.message.cid in taken_seqs])
                await self._stored_part(plan, sent, known, writer, taken_seqs)
                continue
            # A repeat whose entry this batch wrote was stored by an attempt of it that
            # failed later (a transient error after the insert): new, not redelivered.
            own = sum(1 for p in plan.repeats if _own(known.get(p.item.message.id), writer))
            settled = await self._settle(plan, now, own)
            # Last: a batch whose settling fails for good is halved and planned again.
            await self._dead_letter(
                [Rejected(i.record, RejectKind.ID_CONFLICT, why) for i, why in plan.conflicts]
            )
            return settled
        raise StorageUnavailable(f"seqs of a batch did not settle in {ROUNDS} rounds")

    async def _append(self, messages: Sequence[StoredMessage]) -> dict[str, int]:
        """`store.append`; when the store refuses some message (not a taken seq), the ones
        it stored beside it are removed before the refusal is raised, so the halving that
        follows finds no seq stored ahead of a hole. Their id entries stay as this attempt
        wrote them: each was moved only off a seq that holds another message, or one only
        this attempt wrote (see `Known.free_for`), so nobody else stores it there."""
        try:
            return await self._retry("write", partial(self._store.append, messages))
        except Exception:
            await self._retry("write", partial(self._store.retract, messages))
            raise

    async def _take_over(
        self, entries: Sequence[IdEntry], was: Mapping[str, Known], known: dict[str, Known | None]
    ) -> bool:
        """Point left-over id entries at this round's seqs; True if some could not be
        (another writer wrote one meanwhile, or stored its message where it points: those
        are looked up)."""
        if not entries:
            return False
        # Entries kept at their seq first, all at once; then those that change seq, one at
        # a time from the lowest, and in a chat none above one that could not be: a seat
        # held above a plan that proved wrong would be a gap nobody fills.
        keep = [e for e in entries if was[e.id].seq == e.seq]
        refused = (
            await self._retry("write", partial(self._store.reclaim, keep, was)) if keep else set()
        )
        written = [e for e in keep if e.id not in refused]
        stopped: dict[str, int] = {}  # per chat, the lowest seq that could not be written
        for e in sorted(keep, key=_seat):
            if e.id in refused:
                stopped.setdefault(e.cid, e.seq)
        skipped = False
        for e in sorted((e for e in entries if was[e.id].seq != e.seq), key=_seat):
            if e.seq > stopped.get(e.cid, e.seq):
                skipped = True  # planned again with the rest
            elif await self._retry("write", partial(self._store.reclaim, [e], was)):
                refused.add(e.id)
                stopped.setdefault(e.cid, e.seq)
            else:
                written.append(e)
        _wrote(known, written)
        if refused:
            known |= await self._retry("look-up", partial(self._store.known, refused))
        return bool(refused) or skipped

    async def _stored_part(
        self,
        plan: _Round,
        sent: Sequence[StoredMessage],
        known: dict[str, Known | None],
        writer: str,
        taken: Mapping[str, int] | None = None,
    ) -> None:
        """A round stopped after storing `sent` (but for the seqs `taken` by another
        writer): nothing stored is removed, since another writer may have counted it or
        stored after it already (a hole below its count). What stands is repeated by
        the next round, out of partition order if need be; the rest is planned after it."""
        taken = taken or {}
        sent_ids = {m.id for m in sent}
        unsure = [m.id for m in sent if m.cid in taken]
        if unsure:  # which of these chats' messages were stored, and where
            known |= dict.fromkeys(unsure) | await self._retry(
                "look-up", partial(self._store.known, unsure)
            )
        for placed in plan.new:
            if placed.item.message.id in sent_ids and placed.item.message.cid not in taken:
                mid = placed.item.message.id
                known[mid] = _stored(placed, writer, known.get(mid))
        whole = {
            cid
            for cid, chat in plan.plans.items()
            if cid not in taken and all(p.item.message.id in sent_ids for p in chat.new)
        }
        for cid in whole:
            self._book.advanced(cid, plan.plans[cid].state)
        again = {m.cid for m in sent} - whole
        if again:
            await self._retry("chat states", partial(self._book.reload, again))

    def _plan(
        self,
        groups: Mapping[str, list[Accepted]],
        copies: Sequence[tuple[Accepted, Accepted]],
        known: Mapping[str, Known | None],
        writer: str,
    ) -> _Round:
        plans = {
            cid: plan_chat(self._book.state(cid), items, known, writer)
            for cid, items in groups.items()
        }
        result = _Round(plans)
        for p in plans.values():
            result.repeats += p.repeats
            result.conflicts += p.conflicts
        placed = {p.item.message.id: p for p in [*result.new, *result.repeats]}
        for copy, first in copies:
            entry = known.get(copy.message.id)
            if entry is not None and entry.settled_for(copy):  # judged against the store
                if entry.applied and entry.same_message(copy):
                    result.repeats.append(Placed(entry.as_stored(copy), entry.seq))
                else:
                    result.conflicts.append((copy, conflict_reason(copy)))
            elif not same_content(copy, first):
                result.conflicts.append((copy, conflict_reason(copy)))
            elif (stored := placed.get(first.message.id)) is not None:
                result.repeats.append(Placed(like_first(copy, stored.item), stored.seq))
        return result

    async def _settle(self, plan: _Round, now: float, own: int) -> _Stored:
        """The batch is stored: record where each chat stands, then publish the events.
        `own`: repeats this batch stored itself, counted as inserted."""
        repeats: dict[str, list[Placed]] = defaultdict(list)
        for placed in plan.repeats:
            repeats[placed.item.message.cid].append(placed)
        counts: list[_Count] = []
        for cid, chat in plan.plans.items():
            self._book.advanced(cid, chat.state)
            count = _Count.of(cid, chat, repeats[cid])
            if count is not None:
                counts.append(count)
        # A chat may hold messages stored but never counted (an attempt that died, or a
        # round that stopped): their count is read afresh (so a message another writer
        # already counted is not stamped again) and they are stamped with this moment,
        # when they begin to show.
        for c in counts:
            hint = self._book.counted(c.cid)
            if hint is not None and not c.left_over_above(hint):  # nothing stored before
                c.counted = hint
        unsure = [c.cid for c in counts if c.counted is None]
        if unsure:
            stored = await self._retry("look-up", partial(self._store.counts, unsure))
            for c in counts:
                if c.counted is None:
                    c.counted = stored.get(c.cid, c.newest.seq)  # no chat: nothing to count
                    self._book.recorded(c.cid, c.counted)
        counts = [c for c in counts if c.needs_advance()]
        stamps = [(c.cid, seq) for c in counts for seq in c.leftovers()]
        if stamps:
            await self._retry("write", lambda: self._store.restamp(stamps, now))
        updates = [c.advance(now) for c in counts]
        if updates:
            await self._retry("write", lambda: self._store.advance(updates))
            for update in updates:
                self._book.recorded(update.cid, update.state.last_seq)
        events = [self._event(p) for p in sorted(plan.new + plan.repeats, key=_order)]
        if events:
            await self._retry("publish", lambda: self._outbox.publish(events))
        return _Stored(len(plan.new) + own, len(plan.repeats) - own, len(plan.conflicts))

    def _id_entry(self, placed: Placed, writer: str, before: Known | None) -> IdEntry:
        """The entry `writer` writes for a placed message; pinned when another attempt
        wrote it at this seq before (that one may store the message there too)."""
        m, r = placed.item.message, placed.item.record
        pinned = before is not None and before.seq == placed.seq and not before.free_for(writer)
        digest = text_digest(m.text)
        version = 0 if before is None else before.next_version
        return IdEntry(
            m.id, m.cid, placed.seq, m.uid, digest, r.partition, r.offset, writer, pinned, version
        )

    def _message(self, placed: Placed, at: float) -> StoredMessage:
        m, r = placed.item.message, placed.item.record
        return StoredMessage(
            m.cid, placed.seq, m.id, m.uid, m.text, m.createdAt, at, r.partition, r.offset
        )

    def _event(self, placed: Placed) -> MessageCreated:
        m = placed.item.message
        view = MessageView(m.id, m.cid, m.uid, m.text, m.createdAt, placed.seq)
        message = EventMessage.model_validate(view.to_api())
        return MessageCreated(cid=m.cid, seq=placed.seq, message=message)

    # --- Kafka and retries ---------------------------------------------------------

    async def _dead_letter(self, rejected: Sequence[Rejected]) -> None:
        if not rejected:
            return
        await self._retry("dead-letter", lambda: self._outbox.dead_letter(rejected))
        for item in rejected:
            self._metrics.dead_letters.labels(item.kind.value).inc()
            if item.kind is RejectKind.ID_CONFLICT:
                self._metrics.id_conflicts.inc()
            log.warning(
                "record dead-lettered: %s",
                clip(item.reason),
                extra={**_where(item.record), "reason": item.kind.value},
            )

    async def _retry(
        self, step: str, attempt: Callable[[], Awaitable[R]], refusals_too: bool = False
    ) -> R:
        """`attempt` until it succeeds; retryable WorkerErrors (and StoreRefused, with
        `refusals_too`) are reported and waited out."""

        def retryable(exc: Exception) -> bool:
            if refusals_too and isinstance(exc, StoreRefused):
                return True
            return isinstance(exc, WorkerError) and exc.retryable

        def report(exc: Exception, delay: float) -> None:
            reads_fail = not isinstance(exc, OutboxUnavailable)  # Kafka: reads still work
            self._health.failing(f"{step} failing: {exc}", reads_fail=reads_fail)
            self._metrics.retries.labels(step).inc()
            log.warning("%s failed, retrying in %.1fs: %s", step, delay, exc)

        return await retry(
            attempt,
            retry_on=retryable,
            backoff=self._backoff(),  # a fresh sequence for each failing step
            on_failure=report,
            sleep=self._sleep,
        )


def _log_taken(moved: Sequence[Accepted]) -> None:
    """One line per partition whose chats' seqs another writer took."""
    for (topic, partition), offsets in partition_offsets(i.record for i in moved).items():
        here = (topic, partition)
        chats = {i.message.cid for i in moved if (i.record.topic, i.record.partition) == here}
        log.warning(
            "seqs taken by another writer in chats %s (offsets %d..%d)",
            sorted(chats),
            min(offsets),
            max(offsets),
            extra=partition_fields(topic, partition, min(offsets)),
        )


def _stored(placed: Placed, writer: str, entry: Known | None) -> Known:
    """What the store holds for a message this attempt stored (`entry`: its id entry as
    this attempt wrote it)."""
    m = placed.item.message
    digest = text_digest(m.text)
    version = None if entry is None else entry.version
    return Known(
        m.cid, placed.seq, m.uid, digest, True, m.createdAt, writer=writer, version=version
    )


def _own(known: Known | None, writer: str) -> bool:
    """Whether `writer` (this batch) stored the message: its entry is applied, written by
    this batch alone."""
    return known is not None and known.applied and known.free_for(writer)


def _seat(entry: IdEntry) -> tuple[str, int]:
    return entry.cid, entry.seq


def _wrote(known: dict[str, Known | None], entries: Iterable[IdEntry]) -> None:
    """These entries now point at this attempt's seqs (their messages not stored yet): a
    round planned again rewrites them, not looks them up."""
    for e in entries:
        known[e.id] = Known(
            e.cid,
            e.seq,
            e.uid,
            e.digest,
            applied=False,
            writer=e.writer,
            pinned=e.pinned,
            version=e.version,
        )


def _order(placed: Placed) -> tuple[int, int]:
    return placed.item.record.partition, placed.item.record.offset
