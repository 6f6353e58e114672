"""Giving a chat's records their seqs: 1, 2, 3 ... in partition order, gap-free, once.

Pure rules; the persister feeds them what the store knows. A record's seq depends only
on the chat's state and the records before it in the partition, so a batch planned again
after a crash gives every record the seq it had (the store's unique keys catch the rest).

- A record at an offset the chat has already passed (same partition) is usually a
  redelivery: its id is looked up first, and it is repeated (its event again) if it was
  stored. One that was not is stored now, after the newer ones: faust can hand a
  partition's records over out of order around a rebalance, and a record is never
  dropped for it. A record refused earlier is checked again, and refused again unless
  what refused it changed: its author was made a member since (see docs/decisions.md,
  "A refusal judged again").
- A record whose id is already stored (another copy, produced again), or appears earlier
  in the same batch, repeats that message if chat, author and text agree, and is an id
  conflict otherwise.
- Every other record gets the next seq.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from dialogue_worker.domain.records import Accepted


def text_digest(text: str) -> str:
    """What a message id's entry keeps of the text, to tell a copy from a conflict."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ChatState:
    """Where a chat's sequence stands: its newest seq, the partition of the record that
    got it, and the highest offset passed in that partition (-1: none yet)."""

    last_seq: int = 0
    partition: int = -1
    last_offset: int = -1

    def passed(self, item: Accepted) -> bool:
        return item.record.partition == self.partition and item.record.offset <= self.last_offset


@dataclass(frozen=True)
class Known:
    """A message id the store already holds: where it points and what it was."""

    cid: str
    seq: int
    uid: int
    digest: str
    applied: bool  # the history holds this id at this seq (else a crashed attempt left it)
    created_at: float | None = None  # the stored message's createdAt (None: not read)
    taken: bool = False  # its seq holds another message (so it can never be stored there)
    writer: str | None = None  # the attempt that last wrote the entry
    pinned: bool = False  # more than one attempt wrote it at this seq
    version: int | None = None  # its count of writes (None: written before it had one)

    @property
    def next_version(self) -> int:
        """The version a rewrite of this entry gives it."""
        return (self.version or 0) + 1

    def free_for(self, writer: str) -> bool:
        """Whether `writer` may point the entry elsewhere while its seq holds nothing: it
        wrote the entry there and no other attempt did since, so nobody else will store
        its message at that seq."""
        return self.writer == writer and not self.pinned

    def same_message(self, item: Accepted) -> bool:
        m = item.message
        return (self.cid, self.uid, self.digest) == (m.cid, m.uid, text_digest(m.text))

    def as_stored(self, item: Accepted) -> Accepted:
        """`item` as its stored message reads: a repeat may carry another createdAt (a
        producer that built the record again to retry it), and its event and the chat's
        preview show what history holds."""
        return _created(item, self.created_at)

    def settled_for(self, item: Accepted) -> bool:
        """Whether this entry decides `item`'s fate: a message stored under it, or a claim
        of another chat. That chat's owner may be storing its message right now (or its
        redelivery will), so the entry is never taken over from another chat; only the
        chat's own owner takes over an entry its dead attempt left."""
        return self.applied or self.cid != item.message.cid

    def reserves(self, item: Accepted, state: ChatState, writer: str) -> bool:
        """Whether this entry holds a seat for `item`: a seq above where the chat stands
        that holds no message yet, written by another attempt. That attempt may be alive
        (the partition's previous owner, still writing after a rebalance) and store the
        message there, so the message goes there: moved elsewhere, it could be stored
        twice."""
        return (
            not self.settled_for(item)
            and not self.taken
            and self.seq > state.last_seq
            and not self.free_for(writer)
        )


@dataclass(frozen=True)
class Placed:
    item: Accepted
    seq: int


@dataclass
class ChatPlan:
    state: ChatState  # after the plan
    new: list[Placed] = field(default_factory=list)  # to store
    claims: set[str] = field(default_factory=set)  # ids of `new` whose entry is left over
    repeats: list[Placed] = field(default_factory=list)  # stored already: events only
    conflicts: list[tuple[Accepted, str]] = field(default_factory=list)
    unresolved: list[Accepted] = field(default_factory=list)  # passed; to look up first


def plan_chat(
    state: ChatState,
    items: Sequence[Accepted],
    known: Mapping[str, Known | None],
    writer: str = "",
) -> ChatPlan:
    """Seqs for one chat's records (in offset order), given what the store said of ids
    (None: looked up, not there), planned by the attempt `writer`. A record whose entry
    holds a seat (`Known.reserves`) gets that seat, the first record to hold it if two
    do; the others get the lowest free seqs in order. A seat above a seq nobody fills
    leaves the chat's state below it: the messages there are counted once the gap is
    filled."""
    plan = ChatPlan(state)
    seats: dict[str, int] = {}
    held: set[int] = set()  # the seats' seqs
    for item in items:
        mid = item.message.id
        entry = known.get(mid)
        if entry is not None and entry.reserves(item, state, writer) and entry.seq not in held:
            seats[mid] = entry.seq
            held.add(entry.seq)
    # Seqs above the state the look-ups found holding a message: never given out again
    # (each round would find them taken, and plan the same again).
    filled = {
        entry.seq
        for item in items
        if (entry := known.get(item.message.id)) is not None
        and entry.cid == item.message.cid
        and entry.seq > state.last_seq
        and (entry.applied or entry.taken)
    }
    at: dict[int, Accepted] = {}  # seqs this plan fills or finds filled, above the state
    for item in items:
        mid = item.message.id
        entry = known.get(mid)
        if state.passed(item) and mid not in known:
            plan.unresolved.append(item)
            continue
        if entry is not None and entry.settled_for(item):
            if entry.applied and entry.same_message(item):
                plan.repeats.append(Placed(entry.as_stored(item), entry.seq))
                if entry.seq > state.last_seq:  # stored above where the chat stands
                    at[entry.seq] = item  # (a hole below it filled, now or later)
                    state = _filled(state, at)
            else:
                plan.conflicts.append((item, conflict_reason(item)))
            continue
        seq = seats.get(mid)
        if seq is None:
            seq = state.last_seq + 1
            while seq in held or seq in at or seq in filled:
                seq += 1
        at[seq] = item
        plan.new.append(Placed(item, seq))
        state = _filled(state, at)
        if entry is not None:
            plan.claims.add(mid)
    plan.state = state
    return plan


def _filled(state: ChatState, at: Mapping[int, Accepted]) -> ChatState:
    """The chat's state moved up over every seq filled right above it."""
    while (item := at.get(state.last_seq + 1)) is not None:
        state = _moved(state, item, state.last_seq + 1)
    return state


def _moved(state: ChatState, item: Accepted, seq: int) -> ChatState:
    """The chat's state once `item`'s record holds `seq`."""
    same = item.record.partition == state.partition
    return replace(
        state,
        last_seq=seq,
        partition=item.record.partition,
        last_offset=max(item.record.offset, state.last_offset if same else -1),
    )


def _created(item: Accepted, created_at: float | None) -> Accepted:
    if created_at is None or item.message.createdAt == created_at:
        return item
    message = item.message.model_copy(update={"createdAt": created_at})
    return replace(item, message=message)


def like_first(copy: Accepted, first: Accepted) -> Accepted:
    """A copy of a record in the same batch, as the first (which is stored) reads."""
    return _created(copy, first.message.createdAt)


def conflict_reason(item: Accepted) -> str:
    return (
        f"id {item.message.id} is already taken by another chat, "
        "or stored with another author or text"
    )


def first_copies(
    items: Sequence[Accepted],
) -> tuple[list[Accepted], list[tuple[Accepted, Accepted]]]:
    """The batch without repeated ids, and each later copy with the first it repeats."""
    firsts: dict[str, Accepted] = {}
    copies = []
    for item in items:
        first = firsts.setdefault(item.message.id, item)
        if first is not item:
            copies.append((item, first))
    return list(firsts.values()), copies


def same_content(a: Accepted, b: Accepted) -> bool:
    x, y = a.message, b.message
    return (x.cid, x.uid, x.text) == (y.cid, y.uid, y.text)
