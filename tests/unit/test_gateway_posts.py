"""The post use case over hand-written fakes of the bus and the workers: an
Idempotency-Key's entry ages on the monotonic clock, whatever the wall clock does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from contracts.errors import ErrorCode
from contracts.records import MessageRecord
from gateway.domain.idempotency import IdempotencyCache
from gateway.domain.tokens import Principal
from gateway.errors import GatewayError
from gateway.services.chats import Membership
from gateway.services.messages import MessageService
from tests.support.gateway_fakes import FakeBus, FakeWorkers


class AckLostBus(FakeBus):
    """Writes every record; the first one's acknowledgement is lost (a 5031)."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_next = True

    async def publish(
        self, record: MessageRecord, delivered_late: Callable[[], None] | None = None
    ) -> None:
        self.records.append(record)
        if self.lose_next:
            self.lose_next = False
            raise GatewayError(ErrorCode.BUS_UNAVAILABLE, "sent, not confirmed")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


CALLER = Principal(user_id=1, username="alice", expires_at=2_000_000_000, auth_time=0)


async def posts_over(
    bus: FakeBus, elapsed: Clock, *, ttl: float = 60.0, wall: Clock | None = None
) -> tuple[MessageService, str]:
    """The post use case over `bus` and fake workers, its keys aged on `elapsed` and its
    messages stamped by `wall` (1_700_000_000 by default); a chat of users 1 and 2."""
    workers = FakeWorkers(bus)
    chat = await workers.create_chat([1, 2])
    cache = IdempotencyCache(ttl=ttl, max_entries=100, max_bytes=1 << 20, keys_per_user=10)
    membership = Membership(workers, 5.0, elapsed)
    stamp = wall or Clock(1_700_000_000.0)
    return MessageService(workers, bus, membership, cache, stamp, elapsed), chat.id


async def test_a_retry_within_the_window_is_the_same_message_after_a_wall_clock_step() -> None:
    """On the wall clock, a step forward (an NTP correction, a suspended machine) expired
    keys early, and a retry within IDEMPOTENCY_TTL made a second message."""
    bus = AckLostBus()
    wall, elapsed = Clock(1_700_000_000.0), Clock(100.0)
    posts, cid = await posts_over(bus, elapsed, wall=wall)
    with pytest.raises(GatewayError) as lost:  # written, its acknowledgement lost: 5031
        await posts.post(CALLER, cid, "hello", "key-1")
    assert lost.value.code is ErrorCode.BUS_UNAVAILABLE
    wall.now += 7_200  # two hours on the wall, ten seconds in fact
    elapsed.now += 10
    again = await posts.post(CALLER, cid, "hello", "key-1")
    # The retry sent the same record again (one message to the worker), not a new one.
    assert [r.id for r in bus.records] == [again.id, again.id]
    assert again.createdAt == 1_700_000_000


class SlowLostBus(AckLostBus):
    """As AckLostBus, and the lost send lasts `lasts` seconds of the elapsed clock."""

    def __init__(self, elapsed: Clock, lasts: float) -> None:
        super().__init__()
        self.elapsed = elapsed
        self.lasts = lasts

    async def publish(
        self, record: MessageRecord, delivered_late: Callable[[], None] | None = None
    ) -> None:
        if self.lose_next:
            self.elapsed.now += self.lasts  # Kafka answers nothing until the send timeout
        await super().publish(record, delivered_late)


async def test_a_retry_after_a_send_that_lasted_the_whole_window_is_the_same_message() -> None:
    """The key's time counted from before the send: a send lasting IDEMPOTENCY_TTL (the
    settings allow it equal to KAFKA_SEND_TIMEOUT) left a retry after its 5031 with an
    expired entry, and a second message while Kafka could still deliver the first."""
    elapsed = Clock(100.0)
    bus = SlowLostBus(elapsed, lasts=10.0)
    posts, cid = await posts_over(bus, elapsed, ttl=10.0)
    with pytest.raises(GatewayError):
        await posts.post(CALLER, cid, "hello", "key-1")
    elapsed.now += 2  # the client waits Retry-After
    again = await posts.post(CALLER, cid, "hello", "key-1")
    assert [r.id for r in bus.records] == [again.id, again.id]


class LateBus(FakeBus):
    """The first send times out (5031), and its record is delivered a moment later."""

    def __init__(self) -> None:
        super().__init__()
        self.late = True

    async def publish(
        self, record: MessageRecord, delivered_late: Callable[[], None] | None = None
    ) -> None:
        await super().publish(record, delivered_late)  # refused while down, else written
        if self.late:
            self.late = False
            if delivered_late is not None:
                asyncio.get_running_loop().call_soon(delivered_late)
            raise GatewayError(ErrorCode.BUS_UNAVAILABLE, "no acknowledgement in time")


async def test_a_retry_after_a_late_delivery_is_answered_from_memory() -> None:
    """A record delivered after its send timed out was only logged: the client's retry
    with its key sent it again, and with Kafka away at that moment got a second 5031 for
    a message that was stored (found in review). Now the retry is answered 202."""
    bus = LateBus()
    posts, cid = await posts_over(bus, Clock(100.0))
    with pytest.raises(GatewayError) as timed_out:
        await posts.post(CALLER, cid, "hello", "key-1")
    assert timed_out.value.code is ErrorCode.BUS_UNAVAILABLE
    await asyncio.sleep(0)  # the delivery's callback
    bus.down = True  # Kafka away when the client retries
    again = await posts.post(CALLER, cid, "hello", "key-1")
    assert [r.id for r in bus.records] == [again.id]  # answered, not sent again
    with pytest.raises(GatewayError):  # another message with the same key: still refused
        await posts.post(CALLER, cid, "other text", "key-1")


class DeliveredDuringRetryBus(FakeBus):
    """The first send times out; its record is delivered while the retry's send waits,
    and the retry's send then fails too."""

    def __init__(self) -> None:
        super().__init__()
        self.first_late: Callable[[], None] | None = None
        self.sends = 0

    async def publish(
        self, record: MessageRecord, delivered_late: Callable[[], None] | None = None
    ) -> None:
        self.sends += 1
        await super().publish(record, delivered_late)  # refused while down, else written
        if self.sends == 1:
            self.first_late = delivered_late
        elif self.first_late is not None:
            self.first_late()  # the first send's record, delivered now
        raise GatewayError(ErrorCode.BUS_UNAVAILABLE, "no acknowledgement in time")


async def test_a_late_delivery_during_a_failing_retry_is_kept() -> None:
    """The retry's failure recorded its own (unacknowledged) attempt over the mark the
    late delivery had just made, and the next retry was sent again (found in review)."""
    bus = DeliveredDuringRetryBus()
    posts, cid = await posts_over(bus, Clock(100.0))
    for _ in range(2):
        with pytest.raises(GatewayError):
            await posts.post(CALLER, cid, "hello", "key-1")
    bus.down = True
    again = await posts.post(CALLER, cid, "hello", "key-1")
    assert bus.sends == 2 and again.createdAt == 1_700_000_000
