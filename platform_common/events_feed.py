"""A reader of `dialogue.events`: every partition, from the end, no group.

Each gateway reads every event (it cannot know which of its sockets an event concerns
before reading it), and so does each worker (the chat lists it keeps, see
dialogue_worker/services/chat_lists.py). The consumer has no group and commits
nothing: it is assigned all partitions and starts at their ends when its process
starts (after an error, where it stopped). What happened before is not lost to
clients: they resume with `since`, and a session fills any seq it sees skipped from
history (gateway/services/live.py); a worker reads the store for what came before.

`caught_up` is the readers' barrier (with `barrier=True`): it returns once every event
published before the call has been handed over, so a process answers after the writes
other processes answered before it was asked. It asks for the topic's ends through a
client of its own: the broker answers a connection's requests in order, and the
reading consumer's connection holds a fetch waiting for records for up to 500 ms, so a
ListOffsets sent there waited behind it (measured: 500 ms each on an idle topic).
Callers that arrive while a ListOffsets is in flight share the next one (`Rounds`): never
the one in flight, which was sent before they asked and may miss an event published
just before; so many lists at once cost one or two requests, not one each.

Partitions added to the topic while the gateway runs: aiokafka assigns a group-less
consumer the new set when its metadata shows it (within `metadata_every` seconds) and
resets every partition to its end, which would skip what was published meanwhile on
all of them. The feed notices the new assignment after each fetch, drops that fetch,
and puts each partition back where it stopped; a new one is read from its beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, NoReturn, TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError, KafkaError
from pydantic import ValidationError

from contracts.events import decode_event
from platform_common.kafka import ScopedConsumer
from platform_common.logs import clip
from platform_common.retry import Backoff

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Records taken per fetch; publishing them to the hub never blocks.
FETCH_MAX = 1000
#: Seconds from subscribing to an existing topic to having its partitions assigned.
ASSIGNED_WITHIN = 30.0
#: Seconds between metadata refreshes: how soon partitions added to the topic are read.
METADATA_EVERY = 30.0
#: Events behind the ends past which `caught_up` says no at once instead of waiting: a
#: feed that far behind (decoding a burst slower than it comes) would make every caller
#: wait out its time.
BEHIND_MAX = 1000


class Rounds(Generic[T]):
    """One call of `fetch` at a time, shared by every caller that arrived before it was
    sent. A caller that arrives while a call is in flight waits for the next one, which
    it shares with the others that arrive meanwhile: an answer is never older than the
    caller's question. A caller that stops waiting (its timeout) leaves the call to the
    others; a failed call fails the callers of its round, and the next round is a new
    call. A round is bounded by its callers' latest deadline (each caller's `within`
    from when it asked), and one whose deadline passed before it could be sent (its
    callers waited behind a slow call) fails without being sent."""

    def __init__(self, fetch: Callable[[], Awaitable[T]]) -> None:
        self._fetch = fetch
        #: The round not sent yet: its answer, and its callers' latest deadline.
        self._next: tuple[asyncio.Future[T], float] | None = None
        self._sender: asyncio.Task[None] | None = None

    async def __call__(self, within: float) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        if self._next is None:
            future = loop.create_future()
            future.add_done_callback(_retrieved)  # its callers may all have stopped waiting
        else:
            future, latest = self._next
            deadline = max(deadline, latest)
        self._next = (future, deadline)
        if self._sender is None:
            self._sender = asyncio.create_task(self._send(), name="events-feed-ends")
        return await asyncio.shield(future)

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] | None = None
        try:
            while self._next is not None:
                (future, deadline), self._next = self._next, None
                try:
                    if loop.time() >= deadline:
                        raise TimeoutError("every caller of the round has stopped waiting")
                    async with asyncio.timeout_at(deadline):
                        answer = await self._fetch()
                except Exception as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(answer)
        finally:  # cancelled (closed): the rounds it holds are never sent, and say so
            _stopped(future)
            if self._sender is asyncio.current_task():
                self._sender = None
                self._drop_next()

    async def close(self) -> None:
        """Stop the call in flight; its round and the next one fail (a caller arriving
        later starts afresh)."""
        sender = self._sender
        if sender is None:
            return
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        if self._sender is sender:  # cancelled before its first step: no `finally` ran
            self._sender = None
            self._drop_next()

    def _drop_next(self) -> None:
        if self._next is not None:
            _stopped(self._next[0])
            self._next = None


def _stopped(future: asyncio.Future[Any] | None) -> None:
    if future is not None and not future.done():
        future.set_exception(KafkaConnectionError("the events feed stopped"))


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class KafkaEventFeed:
    """Reads the events topic in a background task and hands each event to `deliver`.

    `deliver(event, published)` gets the record's timestamp in unix seconds; `skipped`
    is told about records that are not events (they are skipped).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        metadata_every: float = METADATA_EVERY,
        *,
        client_id: str = "dialogue-gateway-events",
        barrier: bool = False,
        decode: Callable[[bytes], Any] = decode_event,
    ) -> None:
        self._bootstrap = bootstrap
        #: A record's value -> what `deliver` gets (ValueError: not an event, skipped).
        self._decode = decode
        self._topic = topic
        self._client_id = client_id
        self._barrier = barrier
        self._metadata_every = metadata_every
        self._deliver: Callable[[Any, float | None], None] = lambda event, at: None
        self._skipped: Callable[[str], None] = lambda reason: None
        self._ready = False
        #: Per partition, where the feed has read to (the consumer's position after each
        #: fetch): a restarted feed goes on from there, so events published while it was
        #: down are not skipped.
        self._next: dict[Any, int] = {}
        self._assigned: frozenset[Any] = frozenset()  # what `_next` was applied to
        #: Whether a first placement has completed. Not `bool(_next)`: one that failed
        #: half-way has recorded some partitions, and the rest are not new ones.
        self._placed_once = False
        self._task: asyncio.Task[None] | None = None
        self._status = "starting"
        self._consumer: Any = None  # the one reading now (None between attempts)
        self._ends: Any = None  # the client asking for the topic's ends (with barrier=True)
        #: Set (and replaced) after each fetch is handed over: what `caught_up` waits on.
        self._fetched = asyncio.Event()
        self._ends_now: Rounds[dict[Any, int]] = Rounds(self._fetch_ends)

    def ready(self) -> bool:
        return self._ready

    @property
    def status(self) -> str:
        """ "ok", or what the feed is waiting for."""
        return "ok" if self._ready else self._status

    async def start(
        self, deliver: Callable[[Any, float | None], None], skipped: Callable[[str], None]
    ) -> None:
        self._deliver, self._skipped = deliver, skipped
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="events-feed")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._ends_now.close()
        self._ready = False

    async def _run(self) -> None:
        backoff = Backoff(0.2, 5.0)
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="latest",
                metadata_max_age_ms=int(self._metadata_every * 1000),
            )
            ends = (
                ScopedConsumer(
                    metadata_topics=[self._topic],
                    bootstrap_servers=self._bootstrap,
                    client_id=f"{self._client_id}-ends",
                    group_id=None,
                    enable_auto_commit=False,
                    metadata_max_age_ms=int(self._metadata_every * 1000),
                )
                if self._barrier
                else None
            )
            try:
                await consumer.start()
                if ends is not None:
                    await ends.start()
                await self._position(consumer, backoff)
                backoff.reset()
                self._consumer, self._ends = consumer, ends
                await self._consume(consumer)
            except (KafkaError, TimeoutError) as exc:
                self._status = f"Kafka unavailable: {type(exc).__name__}"
                delay = backoff.next_delay()
                log.warning("events feed: %s; again in %.1fs", exc, delay)
            except Exception:  # a bug must not end the feed for the gateway's lifetime
                self._status = "restarting after an error"
                delay = backoff.next_delay()
                log.exception("events feed failed; again in %.1fs", delay)
            finally:  # before the pause: a barrier waiting for this reader is told now
                self._reader_gone()
                with contextlib.suppress(KafkaError):
                    await consumer.stop()
                if ends is not None:
                    with contextlib.suppress(KafkaError):
                        await ends.stop()
            await asyncio.sleep(delay)

    async def _position(self, consumer: Any, backoff: Backoff) -> None:
        """Read every partition of the topic (once it exists) from its end.

        Without a group, a subscribed consumer is assigned every partition (also ones
        added later, read from their ends).
        """
        while self._topic not in await consumer.topics():
            self._status = f"waiting for topic {self._topic}"
            await asyncio.sleep(backoff.next_delay())
        consumer.subscribe([self._topic])
        async with asyncio.timeout(ASSIGNED_WITHIN):
            # Assigned when the topic's metadata arrives; aiokafka tells no listener about
            # a group-less assignment, so it is polled.
            while not consumer.assignment():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        await self._place(consumer, first=not self._placed_once)
        self._placed_once = True
        self._ready = True
        log.info("events feed reads %d partition(s) of %s", len(self._assigned), self._topic)

    async def _place(self, consumer: Any, *, first: bool) -> None:
        """Put every assigned partition where the feed stopped reading it. One it has not
        read: its end on the feed's first start, else its beginning (it was added since)."""
        assigned = frozenset(consumer.assignment())
        for tp in assigned:
            if tp in self._next:
                consumer.seek(tp, self._next[tp])
            elif first:  # resolve "the end" now, not at the first fetch, and remember it
                self._next[tp] = await consumer.position(tp)
            else:
                await consumer.seek_to_beginning(tp)
                self._next[tp] = await consumer.position(tp)
        self._assigned = assigned

    async def _consume(self, consumer: Any) -> NoReturn:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=FETCH_MAX)
            if frozenset(consumer.assignment()) != self._assigned:
                log.info(
                    "events feed: %s has %d partition(s) now; each read on from where it was",
                    self._topic,
                    len(consumer.assignment()),
                )
                await self._place(consumer, first=False)  # this fetch may be from the ends
                continue
            for records in batches.values():
                for record in records:
                    try:
                        self._handle(record)
                    except Exception:  # a bug about one event must not stop the feed
                        log.exception("events feed: handling a record failed")
            # Where each partition is read to, from the consumer: it steps over what is not
            # handed over (transaction markers), which the last record's offset would miss
            # (and `caught_up` would wait for an end it never reaches).
            for tp in self._assigned:
                self._next[tp] = await consumer.position(tp)
            self._wake()

    def _wake(self) -> None:
        """Every `caught_up` waiting for a fetch looks again."""
        fetched, self._fetched = self._fetched, asyncio.Event()
        fetched.set()

    def _reader_gone(self) -> None:
        """The reading consumer stopped (the feed stops or starts over): a `caught_up`
        waiting for it says no now instead of waiting out its time."""
        self._ready = False
        self._consumer = self._ends = None
        self._wake()

    async def caught_up(self, within: float) -> bool:
        """Whether every event published before this call is handed over, waiting up to
        `within` seconds: the topic's ends now (a ListOffsets request sent after the call,
        shared by the calls that arrive before it is sent), then the feed reading up to
        them. False when it cannot tell in time (the feed not reading, Kafka unreachable,
        or the feed behind), and at once when it is more than BEHIND_MAX events behind."""
        consumer, reader = self._consumer, self._ends
        if consumer is None or reader is None or not self._ready:
            return False
        # Partitions added to the topic that the feed does not read yet (it learns of them
        # within `metadata_every`): their events would not be waited for.
        if reader.partitions_for_topic(self._topic) != {tp.partition for tp in self._assigned}:
            return False
        try:
            async with asyncio.timeout(within):
                ends = await self._ends_now(within)
                behind = sum(max(0, end - self._next.get(tp, 0)) for tp, end in ends.items())
                if behind > BEHIND_MAX:
                    return False
                while consumer is self._consumer and any(
                    self._next.get(tp, 0) < end for tp, end in ends.items()
                ):
                    await self._fetched.wait()
        except (KafkaError, TimeoutError):
            return False
        except Exception:  # whatever else the client raises: unknown, not a failed request
            log.exception("events feed: could not tell whether it has read up to the ends")
            return False
        return consumer is self._consumer

    async def _fetch_ends(self) -> dict[Any, int]:
        """The topic's ends now, for every partition the feed reads (one ListOffsets)."""
        reader = self._ends
        if reader is None:
            raise KafkaConnectionError("the events feed is not reading")
        ends: dict[Any, int] = await reader.end_offsets(list(self._assigned))
        return ends

    def _handle(self, record: Any) -> None:
        if record.value is None:
            self._skipped("empty value")
            return
        try:
            event = self._decode(record.value)
        except ValueError as exc:  # pydantic's ValidationError is one, and so is bad JSON
            self._skipped("not an event")
            errors = exc.errors() if isinstance(exc, ValidationError) else None
            log.warning(
                "events feed skipped a record that is not an event: %s",
                clip(errors[0]["msg"] if errors else str(exc)),  # it may quote the record
                extra={
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                },
            )
            return
        published = record.timestamp / 1000 if record.timestamp is not None else None
        try:
            self._deliver(event, published)
        except (TypeError, OverflowError) as exc:  # orjson: an integer past 64 bits
            self._skipped("not encodable")
            log.warning("events feed skipped an event it cannot encode: %s", exc)
