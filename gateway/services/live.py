"""Live delivery: a hub that routes chat events to the sessions of the users in them.

One `Hub` per gateway owns every open session and two indexes: sessions by user (for
chat creation, new members and read markers) and by chat (for messages). The events
feed calls `Hub.publish` for every event; publishing only appends to the sessions'
bounded queues, so a slow client never delays the feed or another client.

A `Session` remembers, per chat, the newest seq it has sent. A message at or below it
is a duplicate and is dropped; one further ahead than the next seq means events were
missed (a gateway that started late, a redelivery that reordered them), and the missing
range is read from history before it is sent. A chat joined while the socket is open
starts at its first message queued when the join is sent, preceded by a `gap` over the
seqs before it; with none queued, at the chat's lastSeq read then (a `gap` over 1 … it).
So a client sees each chat's messages in seq order without gaps, or is told which to
page over REST, across reconnects (it says where it was in `hello.since`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol, TypeVar

from contracts.api import Message
from contracts.events import ChatCreated, ChatEvent, MembersAdded, MessageCreated
from contracts.live import (
    CATCH_UP_BUDGET,
    CATCH_UP_MAX,
    SESSION_CHATS_MAX,
    ChatFrame,
    CloseCode,
    GapFrame,
    MessageFrame,
    ReadFrame,
    Ready,
    frame,
)
from contracts.requests import LIMIT_MAX
from gateway.domain.requests import Paging
from gateway.services.ports import Workers

log = logging.getLogger(__name__)

K = TypeVar("K", int, str)
_TOO_MANY_CHATS = "following too many chats: reconnect with `since`"


class Socket(Protocol):
    """The client connection as a session sees it."""

    async def send(self, text: str) -> None:
        """Send one frame; returns when the transport took it (slow clients block here)."""

    def close(self, code: CloseCode, reason: str) -> None:
        """Close the connection soon (also while a send is blocked)."""


class LiveMetrics(Protocol):
    def delivered(self, kind: str, latency: float | None) -> None: ...

    def overflowed(self) -> None: ...

    def skipped_event(self, reason: str) -> None: ...

    def caught_up(self, messages: int, gaps: int) -> None: ...


@dataclass(frozen=True)
class QueueLimits:
    """What one session may hold unsent before it is closed as too slow."""

    frames: int = 1000
    bytes: int = 1024 * 1024


@dataclass(frozen=True)
class _Item:
    kind: str
    text: str
    cid: str = ""
    seq: int = 0
    published: float | None = None  # unix seconds the event was published, for latency

    @cached_property
    def size(self) -> int:
        """Bytes the frame takes in UTF-8, counted once however many sessions queue it."""
        return len(self.text.encode())


class StreamUnavailable(Exception):
    """The stream cannot be served now (history or the feed unavailable, too many
    catch-ups): resume later. `code` is the close code that tells the client so."""

    def __init__(self, message: str, code: CloseCode = CloseCode.TRY_AGAIN) -> None:
        super().__init__(message)
        self.code = code


class Session:
    """One open stream: the user, the chats it follows and what it has sent of each."""

    __slots__ = (
        "_aside",
        "_budget",
        "_clock",
        "_drainer",
        "_limits",
        "_live",
        "_metrics",
        "_queue",
        "_queued_bytes",
        "_socket",
        "_workers",
        "closed",
        "positions",
        "uid",
    )

    def __init__(
        self,
        uid: int,
        socket: Socket,
        workers: Workers,
        metrics: LiveMetrics,
        limits: QueueLimits,
        clock: Callable[[], float],
    ) -> None:
        self.uid = uid
        #: cid -> newest seq sent (None: a chat joined here, nothing sent of it yet)
        self.positions: dict[str, int | None] = {}
        self.closed = False
        self._socket = socket
        self._workers = workers
        self._metrics = metrics
        self._limits = limits
        self._clock = clock
        self._queue: deque[_Item] | None = None  # made when needed: most sessions are idle
        self._queued_bytes = 0
        self._live = False
        self._drainer: asyncio.Task[None] | None = None
        self._budget = CATCH_UP_BUDGET  # messages the catch-up may still send
        #: Chats whose message frames were set aside while the session was not live yet,
        #: to be sent from history before it goes live (see `offer`).
        self._aside: set[str] = set()

    def offer(self, item: _Item) -> None:
        """Queue a frame (from the hub, synchronously); close the session when it is full.

        Before the session is live (its catch-up runs) the queue cannot drain, so a
        full queue says nothing of the client: its message frames are set aside instead,
        and their chats sent from history when the catch-up ends (until 2026-12-08 a
        client that read every frame at once was closed as too slow when a busy chat
        published more than the queue holds during its catch-up: found in review). Only
        a queue full of other frames (chat changes, read markers) still closes it."""
        if self.closed:
            return
        if self._queue is None:
            self._queue = deque()
        if self._full(item) and not self._live:
            self._set_aside()
            if item.kind == "message":
                self._aside.add(item.cid)
                return
        if self._full(item):
            self._metrics.overflowed()
            self.close(CloseCode.TOO_SLOW, "too slow: reconnect with since")
            return
        self._queue.append(item)
        self._queued_bytes += item.size
        self._wake()

    def _full(self, item: _Item) -> bool:
        """Whether `item` does not fit behind what is queued. An empty queue takes any
        frame: one message can escape to more bytes than the limit (4,096 control
        characters are ~25 KB of JSON), and a client that keeps up must not be closed
        for it."""
        return bool(self._queue) and (
            len(self._queue or ()) >= self._limits.frames
            or self._queued_bytes + item.size > self._limits.bytes
        )

    def _set_aside(self) -> None:
        """Take the queued message frames out, noting their chats in `_aside`. History
        holds every message whose event was published, so nothing is lost: `start`
        sends those chats from their position before going live, and a frame queued
        later that it already sent is dropped as a duplicate."""
        queue = self._queue or deque()
        self._aside.update(i.cid for i in queue if i.kind == "message")
        self._queue = deque(i for i in queue if i.kind != "message")
        self._queued_bytes = sum(i.size for i in self._queue)

    def close(self, code: CloseCode, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self._queue = None
            self._queued_bytes = 0
            self._aside.clear()
            self._socket.close(code, reason)

    async def start(
        self, since: dict[str, int], chats: dict[str, int], unsure: Collection[str] = ()
    ) -> None:
        """Send `ready`, catch up the chats in `since`, then deliver what was queued.

        `chats` (cid -> lastSeq when listed, or the newest seq whose event the hub saw
        before they were routed here) are the user's chats, already routed here.
        A chat not in `since` starts at its listed lastSeq: the client reads older
        messages over REST. `unsure`: chats of which a seq beyond that was heard before
        they were routed here; whatever history holds past the position is sent (the
        event of a message that overtook the one below it was heard before the session
        followed the chat, and without this was never sent nor named: found in review,
        2026-12-07; history, not the event, says what is real).
        """
        for cid, last in chats.items():
            # An event may have placed it already (None: members added meanwhile, where
            # the client's `since` still says what it holds).
            if self.positions.get(cid) is None:
                self.positions[cid] = min(since[cid], last) if cid in since else last
        await self._socket.send(frame(Ready(userId=self.uid).model_dump()))
        for cid in [c for c in since if c in chats]:  # in the client's order (the budget)
            await self._catch_up(cid, chats[cid])
        for cid in unsure:
            position = self.positions.get(cid)
            if position is not None:
                await self._fill(cid, position, None)
        while self._aside:  # more may be set aside while these are sent
            cid = self._aside.pop()
            position = self.positions.get(cid)
            # A chat created or joined meanwhile has its frame still queued: its delivery
            # starts the chat (after the frame, so no message comes before it).
            if position is not None and not self._queued_change(cid):
                await self._fill(cid, position, None)
        self._live = True
        self._wake()

    async def stop(self) -> None:
        """Stop delivering (the connection is gone)."""
        self.closed = True
        if self._drainer is not None:
            self._drainer.cancel()
            await asyncio.gather(self._drainer, return_exceptions=True)

    def _wake(self) -> None:
        if self._live and self._drainer is None and self._queue and not self.closed:
            self._drainer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._queue and not self.closed:
                item = self._queue.popleft()
                self._queued_bytes -= item.size
                await self._deliver(item)
            if not self.closed:
                self._queue = None  # an idle session keeps no queue
        except StreamUnavailable as exc:
            self.close(CloseCode.TRY_AGAIN, str(exc))
        except (ConnectionError, RuntimeError) as exc:  # the socket closed under us
            log.debug("stream of user %d ended while sending: %s", self.uid, exc)
            self.closed = True
        finally:
            self._drainer = None
        self._wake()  # items offered while the last send was finishing

    async def _deliver(self, item: _Item) -> None:
        if item.kind == "message":
            position = self.positions.get(item.cid)
            if position is None:  # a chat joined on this socket: its first message here
                position = await self._joined(item.cid, arriving=item.seq)
            if item.seq <= position:
                return  # a duplicate of what this client has
            if item.seq > position + 1:
                if not await self._in_history(item):
                    return
                await self._fill(item.cid, position, item.seq - 1)
            self.positions[item.cid] = item.seq
        await self._socket.send(item.text)
        latency = None if item.published is None else max(0.0, self._clock() - item.published)
        self._metrics.delivered(item.kind, latency)
        if item.kind != "chat" or item.cid not in self.positions:
            return
        position = self.positions[item.cid]
        if position not in (None, 0):
            return  # only a chat joined here, or with nothing sent of it, is started
        if self._queued_seqs(item.cid):
            return  # its first queued message starts it, or fills up to itself
        if position is None:  # joined here
            await self._joined(item.cid)
        else:
            # Created, or nothing in it yet: a message whose event came before the
            # chat's (a produce retried after another's; until the worker kept new
            # chats pending, also one posted while the chat's event was on its way)
            # was dropped, the chat not followed yet, and never sent nor named (found
            # in review, 2026-12-08). One history read per new chat a session hears of.
            await self._fill(item.cid, 0, None)

    async def _joined(self, cid: str, arriving: int | None = None) -> int:
        """Start a chat joined on this socket: a `gap` over what it holds now, up to the
        first message heard of it, and what the messages heard will not bring sent from
        history. Returns the chat's position. Called after the frame saying the user
        joined `cid` when no message of it is queued, else with the first message of it to
        deliver (`arriving`).

        A message stored after the join whose event reached the hub before the join's was
        dropped (the session did not follow the chat yet), and without a later message it
        was never sent nor named (found in review, 2026-12-04). Its event came before the
        join's, and a message is counted before its event is published, so the lastSeq
        read now counts it. Messages heard since (queued, or arriving) go out live, so the
        gap ends below the first of them. Events can come out of seq order (a
        redelivery): a message heard late, below ones whose events were dropped, ended
        the gap there and left those unnamed (found in review, 2026-12-07); so whatever
        the chat holds above the newest message heard is sent from history."""
        try:
            last = (await self._workers.chat(self.uid, cid)).lastSeq
        except Exception as exc:  # any failure to read: the client resumes later
            raise StreamUnavailable(f"chat unavailable: {type(exc).__name__}") from exc
        heard = self._queued_seqs(cid) + ([] if arriving is None else [arriving])
        start = min([last + 1, *heard]) - 1
        if start:
            await self._send_gap(cid, 1, start)
        self.positions[cid] = start
        if max(heard, default=start) >= last:
            return start
        await self._fill(cid, start, last)  # ends at `last`: sent, or named in a gap
        return last

    def _queued_change(self, cid: str) -> bool:
        return any(i.kind == "chat" and i.cid == cid for i in self._queue or ())

    def _queued_seqs(self, cid: str) -> list[int]:
        return [i.seq for i in self._queue or () if i.kind == "message" and i.cid == cid]

    async def _in_history(self, item: _Item) -> bool:
        """Whether a message event that jumps ahead is what history holds at its seq. A
        stored message is in history before its event is published, so one that is not
        came from elsewhere (anyone who reaches Kafka can write to the events topic): its
        seq would become the chat's position and hide the real messages below it."""
        page = await self._history(item.cid, item.seq - 1)
        held = [_message_frame(item.cid, item.seq, m) for m in page if m.seq == item.seq]
        if item.text in held:  # the frame history would give, to the byte
            return True
        log.warning(
            "event of chat %s at seq %d is not in its history: not sent", item.cid, item.seq
        )
        self._metrics.skipped_event("not in history")
        return False

    async def _catch_up(self, cid: str, listed_last: int) -> None:
        """Everything of `cid` after the position, to the end of history as of now.

        A chat the client holds up to `listed_last` costs nothing: `listed_last` counts
        every message whose event came before the session followed the chat (the
        listing's own, and those the hub recorded meanwhile), and the later events are
        queued for it."""
        position = self.positions[cid] or 0
        behind = listed_last - position
        if behind <= 0:
            return
        if behind > min(CATCH_UP_MAX, max(0, self._budget)):
            await self._send_gap(cid, position + 1, listed_last)
            position = self.positions[cid] = listed_last
        await self._fill(cid, position, None)

    async def _fill(self, cid: str, after: int, upto: int | None) -> None:
        """Send `cid`'s messages after seq `after` (to `upto`, or to the end) from history."""
        if upto is not None and upto - after > CATCH_UP_MAX:
            await self._send_gap(cid, after + 1, upto)
            self.positions[cid] = upto
            return
        sent = 0
        cursor = after
        while upto is None or cursor < upto:
            page = await self._history(cid, cursor)
            found = sorted(
                (m for m in page if m.seq is not None and cursor < m.seq), key=lambda m: m.seq or 0
            )
            for message in found:
                if upto is not None and message.seq is not None and message.seq > upto:
                    break
                await self._socket.send(_message_frame(cid, message.seq or 0, message))
                cursor = self.positions[cid] = message.seq or cursor
                sent += 1
                self._budget -= 1
            if len(page) < LIMIT_MAX or not found:
                break
        if upto is not None and cursor < upto:  # history has less than the event said
            await self._send_gap(cid, cursor + 1, upto)  # counts itself
            self.positions[cid] = upto
        self._metrics.caught_up(sent, 0)

    async def _history(self, cid: str, after: int) -> list[Message]:
        try:
            page = await self._workers.messages(
                self.uid, cid, Paging(LIMIT_MAX, ("afterSeq", str(after)))
            )
        except Exception as exc:  # any failure to read: the client resumes later
            raise StreamUnavailable(f"history unavailable: {type(exc).__name__}") from exc
        return page.data

    async def _send_gap(self, cid: str, first: int, last: int) -> None:
        await self._socket.send(frame(GapFrame(cid=cid, fromSeq=first, toSeq=last).model_dump()))
        self._metrics.caught_up(0, 1)


def _message_frame(cid: str, seq: int, message: Message) -> str:
    return frame(MessageFrame(cid=cid, seq=seq, message=message).model_dump())


class Hub:
    """Every open session of this gateway, indexed by user and by chat."""

    def __init__(self) -> None:
        self._by_uid: dict[int, set[Session]] = {}
        self._by_cid: dict[str, set[Session]] = {}
        #: (cid, seq) of the message events published while any stream lists its chats,
        #: one shared record (each listing used to keep its own copy of every event of
        #: the platform: up to STREAM_CATCH_UPS copies, found in review, 2026-12-08).
        self._journal: list[tuple[str, int]] = []
        self._journal_base = 0  # how many entries were trimmed off its front
        self._recordings: list[int] = []  # where each open recording began in it

    @property
    def sessions(self) -> int:
        return sum(len(s) for s in self._by_uid.values())

    def sessions_of(self, uid: int) -> int:
        return len(self._by_uid.get(uid, ()))

    @property
    def followed(self) -> int:
        """Chats at least one session follows."""
        return len(self._by_cid)

    def register(self, session: Session) -> None:
        """Route the user's chat changes to `session` (before its chats are listed)."""
        self._by_uid.setdefault(session.uid, set()).add(session)

    def follow(self, session: Session, cids: list[str]) -> None:
        """Route these chats' messages to `session`."""
        for cid in cids:
            self._by_cid.setdefault(cid, set()).add(session)

    @contextlib.contextmanager
    def recording(self) -> Iterator[dict[str, set[int]]]:
        """cid -> the seqs of the message events published while inside, filled when it
        is left: what a session that lists its chats and then follows them would
        otherwise not hear of."""
        seen: dict[str, set[int]] = {}
        start = self._journal_base + len(self._journal)
        self._recordings.append(start)
        try:
            yield seen
        finally:
            for cid, seq in self._journal[start - self._journal_base :]:
                seen.setdefault(cid, set()).add(seq)
            self._recordings.remove(start)  # equal starts are the same to the journal
            keep = min(self._recordings, default=self._journal_base + len(self._journal))
            del self._journal[: keep - self._journal_base]
            self._journal_base = keep

    def unregister(self, session: Session) -> None:
        _discard(self._by_uid, session.uid, session)
        for cid in session.positions:
            _discard(self._by_cid, cid, session)

    def close_all(self, code: CloseCode, reason: str) -> None:
        for sessions in list(self._by_uid.values()):
            for session in list(sessions):
                session.close(code, reason)

    def publish(self, event: ChatEvent, published: float | None = None) -> None:
        """Queue `event` for every session it concerns (never blocks)."""
        if isinstance(event, MessageCreated):
            text = _message_frame(event.cid, event.seq, event.message)
            item = _Item("message", text, event.cid, event.seq, published)
            for session in tuple(self._by_cid.get(event.cid, ())):
                session.offer(item)
            if self._recordings:
                self._journal.append((event.cid, event.seq))
        elif isinstance(event, ChatCreated):
            chat = event.chat
            text = frame(
                ChatFrame(
                    cid=event.cid, change="created", chat=chat, members=chat.users
                ).model_dump()
            )
            for session in self._joining(event.cid, chat.users, position=0):
                session.offer(_Item("chat", text, event.cid, published=published))
        elif isinstance(event, MembersAdded):
            text = frame(
                ChatFrame(
                    cid=event.cid, change="members_added", users=event.users, members=event.members
                ).model_dump()
            )
            self._joining(event.cid, event.users, position=None)
            for session in tuple(self._by_cid.get(event.cid, ())):
                session.offer(_Item("chat", text, event.cid, published=published))
        else:
            text = frame(ReadFrame(cid=event.cid, seq=event.seq).model_dump())
            for session in tuple(self._by_uid.get(event.uid, ())):
                if event.cid in session.positions:
                    session.offer(_Item("read", text, event.cid, published=published))

    def _joining(self, cid: str, uids: list[int], position: int | None) -> list[Session]:
        """Follow `cid` on the sessions of `uids` that do not yet; return all of theirs.
        A session already following SESSION_CHATS_MAX chats is closed instead (TRY_AGAIN:
        the reconnect lists the user's most active chats, this one among them)."""
        joined: list[Session] = []
        for uid in uids:
            for session in tuple(self._by_uid.get(uid, ())):
                if cid not in session.positions:
                    if len(session.positions) >= SESSION_CHATS_MAX:
                        session.close(CloseCode.TRY_AGAIN, _TOO_MANY_CHATS)
                        continue
                    session.positions[cid] = position
                    self.follow(session, [cid])
                joined.append(session)
        return joined


def _discard(index: dict[K, set[Session]], key: K, session: Session) -> None:
    sessions = index.get(key)
    if sessions is not None:
        sessions.discard(session)
        if not sessions:
            del index[key]
