"""The events feed (platform_common/events_feed.py): its placement of partitions when its
first placement fails half-way, against a hand-written consumer, and what it makes of any
record a producer to the events topic can write. Reading real Kafka is
tests/integration/test_events_feed.py."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace
from typing import Any, Literal

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import decode_event
from gateway.services.live import Hub
from platform_common.events_feed import BEHIND_MAX, KafkaEventFeed, Rounds
from platform_common.retry import Backoff

TOPIC = "dialogue.events"


class Consumer:
    """Three partitions at offset 40; `position` of partition 1 fails the first time."""

    def __init__(self) -> None:
        self.failing = {1}
        self.rewound: list[int] = []
        self.seeks: dict[int, int] = {}

    async def topics(self) -> set[str]:
        return {TOPIC}

    def subscribe(self, topics: list[str]) -> None:
        assert topics == [TOPIC]

    def assignment(self) -> set[int]:
        return {0, 1, 2}

    async def position(self, tp: int) -> int:
        if tp in self.failing:
            self.failing.discard(tp)
            raise KafkaConnectionError("metadata went away")
        return 0 if tp in self.rewound else 40

    def seek(self, tp: int, offset: int) -> None:
        self.seeks[tp] = offset

    async def seek_to_beginning(self, tp: int) -> None:
        self.rewound.append(tp)


async def test_a_first_placement_that_failed_half_way_still_starts_every_partition_at_its_end() -> (
    None
):
    """It used to count as done once any partition was recorded: the retry read the
    others from their beginning, replaying the topic's whole history to the streams."""
    feed = KafkaEventFeed("127.0.0.1:1", TOPIC)
    consumer: Any = Consumer()
    with pytest.raises(KafkaConnectionError):
        await feed._position(consumer, Backoff(0.01, 0.01))
    await feed._position(consumer, Backoff(0.01, 0.01))
    assert consumer.rewound == [] and feed.ready()
    assert feed._next == {0: 40, 1: 40, 2: 40}


# --- what a producer to the events topic can send ------------------------------------------

CID = "65f0c0ffee0000000000beef"
GOOD = {"v": 1, "type": "chat.read", "cid": CID, "uid": 7, "seq": 3}
REASONS = {"empty value", "not an event", "not encodable"}
INTS = st.integers(min_value=-(2**70), max_value=2**70)
JSON = st.recursive(
    st.none() | st.booleans() | INTS | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
VALUES = st.one_of(
    st.none(),
    st.binary(max_size=64),
    JSON.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS) if _dumps(v) else b"x"),
    st.fixed_dictionaries({k: st.just(v) for k, v in GOOD.items()})
    .flatmap(
        lambda good: st.sampled_from(sorted(good)).flatmap(
            lambda field: JSON.map(lambda bad: {**good, field: bad})
        )
    )
    .map(lambda v: orjson.dumps(v) if _dumps(v) else b"{}"),
    st.just(orjson.dumps(GOOD)),
)


def _dumps(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(VALUES, st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_record_of_the_events_topic_is_delivered_or_skipped_with_its_reason(
    value: bytes | None, timestamp: int | None
) -> None:
    """Anyone who may produce to the topic reaches this code, and every live stream hears
    what it delivers: a record is an event the hub can send (delivered) or skipped with
    one of the documented reasons, and the feed goes on."""
    feed = KafkaEventFeed("127.0.0.1:9", TOPIC)
    delivered: list[Any] = []
    skipped: list[str] = []
    hub = Hub()

    def deliver(event: Any, published: float | None) -> None:
        hub.publish(event, published)  # encodes the frame, as for a live socket
        delivered.append(event)

    feed._deliver, feed._skipped = deliver, skipped.append
    record = SimpleNamespace(topic=TOPIC, partition=0, offset=1, value=value, timestamp=timestamp)
    feed._handle(record)
    assert len(delivered) + len(skipped) == 1 and set(skipped) <= REASONS
    if value is None:
        assert skipped == ["empty value"]
    elif value == orjson.dumps(GOOD):
        assert delivered == [decode_event(value)]


@pytest.mark.parametrize("field", ["type", "cid", "v"])
def test_a_skipped_record_is_logged_in_one_short_line(
    field: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in review: the reason quoted the record's `type` whole: a 1 MB line, written by
    every gateway for every such record anyone may produce."""
    feed = KafkaEventFeed("127.0.0.1:9", TOPIC)
    feed._skipped = lambda reason: None
    huge = {**GOOD, field: "\u2028X" * 250_000}
    record = SimpleNamespace(topic=TOPIC, partition=0, offset=1, value=orjson.dumps(huge))
    record.timestamp = None
    feed._handle(record)
    [line] = [r.getMessage() for r in caplog.records if "not an event" in r.getMessage()]
    assert len(line) < 1_000, len(line)


class Ends:
    """The client asking for the topic's ends: three partitions, `ahead` past 40 each."""

    def __init__(self, ahead: int) -> None:
        self.ahead = ahead

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2}

    async def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        return {tp: 40 + self.ahead for tp in partitions}


@pytest.mark.parametrize("ahead", [BEHIND_MAX // 3 + 1, 10 * BEHIND_MAX])
async def test_a_feed_far_behind_says_so_at_once_instead_of_waiting(ahead: int) -> None:
    """A feed decoding a burst slower than it comes would make every list wait out its
    time before reading the store (0.5 s each): past BEHIND_MAX events it says no."""
    feed = KafkaEventFeed("127.0.0.1:9", TOPIC, barrier=True)
    feed._consumer, feed._ends, feed._ready = object(), Ends(ahead), True
    feed._assigned = frozenset(TopicPartition(TOPIC, p) for p in range(3))
    feed._next = dict.fromkeys(feed._assigned, 40)
    async with asyncio.timeout(30):  # a guard against a hang, not a measure of speed
        assert not await feed.caught_up(within=3600.0)


# --- the topic's ends, one request for the callers that arrive before it is sent ----------

#: Every wait of these tests is bounded by it, so a round never answered fails the test
#: instead of hanging it (a guard, not a measure of speed).
GUARD = 5.0


class ListOffsets:
    """A ListOffsets that answers its call number once `release`d (or fails, or hangs)."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail: Exception | None = None
        self.hang = False

    async def __call__(self) -> int:
        self.calls += 1
        number = self.calls
        self.started.set()
        try:
            if self.hang:
                await asyncio.Event().wait()
            await self.release.wait()
        finally:  # answered, failed or cancelled: the next call is a new one
            self.release.clear()
            self.started.clear()
        if self.fail is not None:
            raise self.fail
        return number


async def _sent(ends: ListOffsets) -> None:
    """Until a request is in flight."""
    async with asyncio.timeout(GUARD):
        await ends.started.wait()


async def _answers(*tasks: asyncio.Future[int]) -> list[int]:
    async with asyncio.timeout(GUARD):
        return list(await asyncio.gather(*tasks))


async def _fails(
    task: asyncio.Future[int], error: type[BaseException], match: str | None = None
) -> None:
    with pytest.raises(error, match=match):
        async with asyncio.timeout(GUARD):
            await task


async def _arrive(rounds: Rounds[int], n: int, within: float = GUARD) -> list[asyncio.Task[int]]:
    """n callers that have joined a round (a call joins before its first await)."""
    arrived: list[int] = []
    joined = asyncio.Event()

    async def caller() -> int:
        arrived.append(1)
        if len(arrived) == n:
            joined.set()
        return await rounds(within)  # joins a round before its first await

    tasks = [asyncio.create_task(caller()) for _ in range(n)]
    await joined.wait()
    return tasks


async def _asked_alone(rounds: Rounds[int], ends: ListOffsets) -> int:
    """The answer to one caller asking while nothing is in flight: a request of its own."""
    (caller,) = await _arrive(rounds, 1)
    await _sent(ends)
    ends.release.set()
    (answer,) = await _answers(caller)
    return answer


async def test_callers_arriving_while_a_request_is_in_flight_share_the_next_one() -> None:
    """The one in flight was sent before they asked (it may miss an event published just
    before): they never get its answer, and all of them together cost one more request."""
    ends = ListOffsets()
    rounds = Rounds(ends)
    (first,) = await _arrive(rounds, 1)
    await _sent(ends)
    later = await _arrive(rounds, 6)
    assert ends.calls == 1
    ends.release.set()  # answers call 1
    assert await _answers(first) == [1]
    await _sent(ends)
    ends.release.set()  # answers call 2
    assert await _answers(*later) == [2] * 6
    assert ends.calls == 2


async def test_a_failed_request_fails_its_round_only_and_the_next_round_asks_again() -> None:
    ends = ListOffsets()
    rounds = Rounds(ends)
    ends.fail = KafkaConnectionError("broker went away")
    failing = await _arrive(rounds, 3)
    await _sent(ends)
    ends.release.set()
    for task in failing:
        await _fails(task, KafkaConnectionError)
    ends.fail = None
    assert await _asked_alone(rounds, ends) == 2


async def test_a_caller_that_stops_waiting_leaves_the_request_to_the_others() -> None:
    ends = ListOffsets()
    rounds = Rounds(ends)
    leaving, staying = await _arrive(rounds, 2)
    await _sent(ends)
    leaving.cancel()
    await _fails(leaving, asyncio.CancelledError)
    ends.release.set()
    assert await _answers(staying) == [1] and ends.calls == 1


async def test_a_request_that_hangs_ends_at_the_round_s_deadline_and_the_next_is_sent() -> None:
    ends = ListOffsets()
    ends.hang = True
    rounds = Rounds(ends)
    await _fails(asyncio.ensure_future(rounds(0.05)), TimeoutError)
    ends.hang = False
    assert await _asked_alone(rounds, ends) == 2


async def test_a_round_whose_callers_gave_up_behind_a_slow_request_is_not_sent() -> None:
    """Its deadline is its callers', from when they asked: waiting behind a slow request
    does not give it a time of its own after they are gone (the next caller would wait
    behind it)."""
    ends = ListOffsets()
    rounds = Rounds(ends)
    (slow,) = await _arrive(rounds, 1)
    await _sent(ends)
    (hurried,) = await _arrive(rounds, 1, within=0.0)  # its deadline passes at once
    ends.release.set()
    assert await _answers(slow) == [1]
    await _fails(hurried, TimeoutError)
    assert ends.calls == 1
    assert await _asked_alone(rounds, ends) == 2


async def test_a_round_every_caller_left_fails_without_an_unretrieved_exception() -> None:
    """Its answer is an exception nobody awaits: asyncio would log "Future exception was
    never retrieved" when it is collected, unless the round marks it retrieved."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda loop, context: reported.append(context))
    try:
        ends = ListOffsets()
        ends.fail = KafkaConnectionError("broker went away")
        rounds = Rounds(ends)
        (caller,) = await _arrive(rounds, 1)
        await _sent(ends)
        sender = rounds._sender
        assert sender is not None
        caller.cancel()
        await _fails(caller, asyncio.CancelledError)
        ends.release.set()
        async with asyncio.timeout(GUARD):
            await sender  # the round has failed: its request did
        del rounds, caller, sender, ends  # (ends holds the exception, which holds the round)
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert reported == []


async def test_closing_answers_every_waiting_caller_and_leaves_no_task() -> None:
    ends = ListOffsets()
    rounds = Rounds(ends)
    (in_flight,) = await _arrive(rounds, 1)
    await _sent(ends)
    (waiting,) = await _arrive(rounds, 1)  # the next round, never sent
    sender = rounds._sender
    assert sender is not None
    await rounds.close()
    for task in (in_flight, waiting):
        await _fails(task, KafkaConnectionError, match="stopped")
    assert sender.done() and rounds._sender is None


async def test_closing_before_the_first_request_is_sent_still_answers_and_starts_afresh() -> None:
    """Closed before its sender ran: a task cancelled before its first step never runs its
    `finally`, and the round it left behind was joined by every later caller, never sent."""
    ends = ListOffsets()
    rounds = Rounds(ends)
    early = asyncio.ensure_future(rounds(GUARD))
    await asyncio.sleep(0)  # the caller joins a round; its sender has not run yet
    await rounds.close()
    await _fails(early, KafkaConnectionError, match="stopped")
    assert await _asked_alone(rounds, ends) == 1


class Watched(asyncio.Event):
    """An event that tells when someone waits for it."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = asyncio.Event()

    async def wait(self) -> Literal[True]:
        self.waited.set()
        return await super().wait()


async def test_a_barrier_waiting_for_a_reader_that_stops_says_no_at_once() -> None:
    """It used to wait out its whole time for a fetch that would never come."""
    feed = KafkaEventFeed("127.0.0.1:9", TOPIC, barrier=True)
    feed._consumer, feed._ends, feed._ready = object(), Ends(5), True
    feed._assigned = frozenset(TopicPartition(TOPIC, p) for p in range(3))
    feed._next = dict.fromkeys(feed._assigned, 40)  # 15 events behind the ends
    feed._fetched = fetched = Watched()
    waiting = asyncio.ensure_future(feed.caught_up(within=3600.0))
    async with asyncio.timeout(GUARD):
        await fetched.waited.wait()  # it waits for the reader's next fetch
    feed._reader_gone()
    async with asyncio.timeout(GUARD):
        assert not await waiting
