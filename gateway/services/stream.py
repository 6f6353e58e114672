"""Opening and closing live streams: who the user is, which chats they follow."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from contracts.live import FOLLOW_MAX, CloseCode
from gateway.services.live import (
    Hub,
    LiveMetrics,
    QueueLimits,
    Session,
    Socket,
    StreamUnavailable,
)
from gateway.services.ports import EventFeed, Workers

log = logging.getLogger(__name__)

#: Seconds a new stream waits for a catch-up slot before it is told to come back (1013).
SLOT_WITHIN = 10.0
#: Seconds a stream may hold its slot listing chats and catching up; a client reading
#: slowly enough to take longer is closed with 4004 and resumes from what it got.
CATCH_UP_WITHIN = 60.0


class StreamService:
    """Opens sessions on the hub; bounds how many catch up at once."""

    def __init__(
        self,
        hub: Hub,
        workers: Workers,
        feed: EventFeed,
        metrics: LiveMetrics,
        limits: QueueLimits,
        concurrent_catch_ups: int = 32,
        clock: Callable[[], float] = time.time,
        *,
        slot_within: float = SLOT_WITHIN,
        catch_up_within: float = CATCH_UP_WITHIN,
        max_per_user: int = 16,
        max_per_address: int = 1000,
    ) -> None:
        self.hub = hub
        self._workers = workers
        self._feed = feed
        self._metrics = metrics
        self._limits = limits
        self._catch_ups = asyncio.Semaphore(concurrent_catch_ups)
        self._clock = clock
        self._slot_within = slot_within
        self._catch_up_within = catch_up_within
        self._max_per_user = max_per_user
        self._max_per_address = max_per_address
        self._by_address: dict[str, int] = {}  # open sessions per client address
        self._address_of: dict[Session, str] = {}
        self._closing = False

    async def open(
        self, uid: int, socket: Socket, since: dict[str, int], address: str | None = None
    ) -> Session:
        """A session that has sent `ready` and caught up, now delivering live events.

        StreamUnavailable when it cannot be (the caller closes with its code): also when
        the user or the client `address` holds as many streams as it may (an hour-long
        token opens any number, and each holds a socket and its chat index). None: a
        peer many clients share (a proxy), not held to `max_per_address`.
        """
        if self._closing:
            raise StreamUnavailable("gateway shutting down", CloseCode.GOING_AWAY)
        if not self._feed.ready():
            raise StreamUnavailable("the events feed is not positioned yet")
        if self.hub.sessions_of(uid) >= self._max_per_user:
            raise StreamUnavailable(f"this user holds {self._max_per_user} streams already")
        if address is not None and self._by_address.get(address, 0) >= self._max_per_address:
            raise StreamUnavailable(f"this address holds {self._max_per_address} streams already")
        session = Session(uid, socket, self._workers, self._metrics, self._limits, self._clock)
        if address is not None:
            self._by_address[address] = self._by_address.get(address, 0) + 1
            self._address_of[session] = address
        self.hub.register(session)  # from here on, the user's new chats reach the session
        try:
            await self._catch_up(session, since)
        except BaseException:
            await self.close(session)
            raise
        return session

    async def _catch_up(self, session: Session, since: dict[str, int]) -> None:
        """List the user's chats, follow them, send `ready` and catch up, in a slot."""
        try:
            async with asyncio.timeout(self._slot_within):
                await self._catch_ups.acquire()
        except TimeoutError:
            raise StreamUnavailable("too many streams are catching up: come back") from None
        try:
            async with asyncio.timeout(self._catch_up_within) as deadline:
                # A message whose event reaches the hub while the chats are listed would
                # fall between the listing and the session: the hub records its seq.
                with self.hub.recording() as published:
                    chats = await self._chats(session.uid)
                    self.hub.follow(session, list(chats))
                unsure = set()
                for cid, seqs in published.items():
                    if cid in chats:
                        chats[cid] = heard_through(chats[cid], seqs)
                        if max(seqs) > chats[cid]:
                            unsure.add(cid)
                await session.start(since, chats, unsure)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise StreamUnavailable(
                f"the catch-up took over {self._catch_up_within:g} s: resume from what you got",
                CloseCode.TOO_SLOW,
            ) from None
        finally:
            self._catch_ups.release()

    async def close(self, session: Session) -> None:
        self.hub.unregister(session)
        address = self._address_of.pop(session, None)
        if address is not None:
            left = self._by_address[address] - 1
            if left:
                self._by_address[address] = left
            else:
                del self._by_address[address]
        await session.stop()

    def shut_down(self) -> None:
        """Close every stream with 1001, and every one whose hello comes after."""
        self._closing = True
        self.hub.close_all(CloseCode.GOING_AWAY, "gateway shutting down")

    async def _chats(self, uid: int) -> dict[str, int]:
        """The chats the stream follows: cid -> lastSeq (contracts.live.Followed)."""
        try:
            followed = await self._workers.followed(uid)
        except Exception as exc:  # any failure: the client resumes later
            raise StreamUnavailable(f"chats unavailable: {type(exc).__name__}") from exc
        if followed.more:
            log.warning(
                "user %d is in more than %d chats: the stream follows the %d most active "
                "only, the others are read over REST (docs/live.md)",
                uid,
                FOLLOW_MAX,
                len(followed.data),
            )
        return followed.data


def heard_through(listed: int, heard: set[int]) -> int:
    """Where a chat stands once the seqs heard while it was listed are counted: only those
    that follow on from its listed lastSeq. The newest heard used to count, so one stray
    or forged event (seq 10**12, say) became the socket's position, and every real
    message below it was dropped as already sent (found in review); the live path checks
    such a jump against history, and a real message after a hole is filled from there.
    A chat where a seq was heard beyond this is read from history at the start (an event
    that came before the one below it was heard nowhere else)."""
    while listed + 1 in heard:
        listed += 1
    return listed
