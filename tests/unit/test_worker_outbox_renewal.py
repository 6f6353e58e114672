"""The outbox's producer is made again after an error that leaves its sequence numbers
out of step with the broker's (a hand-written producer stands in for aiokafka's; the real
producer, against a real broker, is tests/integration/test_worker_outbox.py)."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

from contracts.events import ChatRead
from dialogue_worker.adapters import outbox as outbox_module
from dialogue_worker.adapters.outbox import KafkaOutbox
from dialogue_worker.errors import OutboxUnavailable

CID = "65f0c0ffee0000000000beef"


class Producer:
    """Made by the outbox; the first one made fails every send with `failure`."""

    made: ClassVar[list[Producer]] = []
    failure: ClassVar[Exception | None] = None

    def __init__(self, **kwargs: Any) -> None:
        self.sent: list[Any] = []
        self.stopped = False
        self.fails = Producer.failure if not Producer.made else None
        Producer.made.append(self)

    async def start(self) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes, **kwargs: Any) -> asyncio.Future[None]:
        await asyncio.sleep(0)  # aiokafka's send may wait (a full batch draining)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fails is not None:
            done.set_exception(self.fails)
        else:
            self.sent.append((topic, value))
            done.set_result(None)
        return done


@pytest.fixture
def outbox(monkeypatch: pytest.MonkeyPatch) -> KafkaOutbox:
    Producer.made = []
    monkeypatch.setattr(outbox_module, "ScopedProducer", Producer)
    return KafkaOutbox("127.0.0.1:9", dlq_topic="m.dlq", topic="m", events_topic="e")


async def test_a_producer_out_of_step_with_the_broker_is_made_again(outbox: KafkaOutbox) -> None:
    """Retried on the same producer, every send to that partition failed for ever."""
    Producer.failure = OutOfOrderSequenceNumber()
    await outbox.start()
    event = ChatRead(cid=CID, uid=1, seq=2)
    with pytest.raises(OutboxUnavailable):
        await outbox.publish([event])
    await outbox.publish([event])  # the persister's retry
    first, second = Producer.made
    assert first.stopped and not second.stopped
    assert second.sent == [("e", event.to_bytes())]


async def test_a_transient_error_keeps_the_producer(outbox: KafkaOutbox) -> None:
    Producer.failure = KafkaConnectionError()
    await outbox.start()
    with pytest.raises(OutboxUnavailable):
        await outbox.publish([ChatRead(cid=CID, uid=1, seq=2)])
    assert len(Producer.made) == 1 and not Producer.made[0].stopped


async def test_a_stopped_outbox_is_not_started_again_by_a_send(outbox: KafkaOutbox) -> None:
    Producer.failure = None
    await outbox.start()
    await outbox.stop()
    with pytest.raises(OutboxUnavailable, match="not started"):
        await outbox.publish([ChatRead(cid=CID, uid=1, seq=2)])
    assert len(Producer.made) == 1


async def test_sends_racing_a_renewal_start_one_producer_and_keep_the_new_one(
    outbox: KafkaOutbox,
) -> None:
    """Found in review: two sends after a renewal each started a producer (the first never
    stopped), a late failure of the old producer dropped the new one, and a send that
    read the producer again per record met None half-way (an AttributeError)."""
    Producer.failure = OutOfOrderSequenceNumber()
    await outbox.start()
    event = ChatRead(cid=CID, uid=1, seq=2)
    results = await asyncio.gather(
        outbox.publish([event]), outbox.publish([event] * 5), return_exceptions=True
    )
    assert [type(r) for r in results] == [OutboxUnavailable] * 2  # both on the old one
    await asyncio.gather(outbox.publish([event]), outbox.publish([event]))
    first, second = Producer.made  # one new producer, however many sends asked
    assert first.stopped and not second.stopped and len(second.sent) == 2


async def test_a_start_cut_short_leaves_no_producer_running(
    outbox: KafkaOutbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start cancelled by its caller's timeout (a chat request allows 1 s) left the
    half-started producer, its metadata task and connections, running for good."""
    Producer.failure = None
    never = asyncio.Event()

    async def waits_for_a_producer_id(self: Producer) -> None:
        await never.wait()

    monkeypatch.setattr(Producer, "start", waits_for_a_producer_id)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await outbox.start()
    await outbox.stop()  # waits for what it retired
    assert len(Producer.made) == 1 and Producer.made[0].stopped


async def test_a_start_under_way_when_the_outbox_stops_leaves_no_producer_running(
    outbox: KafkaOutbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stop() did not wait for a start under way (a send restarting the producer after a
    renewal): the start ended after it and kept a producer nobody would stop (found in
    review)."""
    Producer.failure = None
    granted = asyncio.Event()
    entered = asyncio.Event()

    async def waits_for_a_producer_id(self: Producer) -> None:
        entered.set()
        await granted.wait()

    await outbox.start()
    await outbox.stop()
    outbox._started = True  # as after a renewal: the next send starts a producer
    monkeypatch.setattr(Producer, "start", waits_for_a_producer_id)
    sending = asyncio.ensure_future(outbox.publish([ChatRead(cid=CID, uid=1, seq=2)]))
    await entered.wait()
    stopping = asyncio.ensure_future(outbox.stop())
    granted.set()
    await asyncio.wait_for(stopping, 60)  # a bound on a hang, not a figure
    with pytest.raises(OutboxUnavailable):
        await sending
    assert outbox._producer is None
    assert all(p.stopped for p in Producer.made) and len(Producer.made) == 2


class Accumulator:
    """What close_producer uses of aiokafka's accumulator: one batch never sent."""

    def __init__(self) -> None:
        self._batches: dict[Any, list[Any]] = {}
        self._pending_batches: set[Any] = set()
        self.failed: list[Exception] = []

    def fail_all(self, exc: Exception) -> None:
        self.failed.append(exc)


class Sender:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def test_a_producer_kafka_never_drains_stops_within_its_bound(
    outbox: KafkaOutbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idempotent producer retries a batch for a partition without a leader for ever
    and its stop waits for it: the outbox's stop never returned (found in review)."""
    Producer.failure = None
    never = asyncio.Event()

    async def flushes_for_ever(self: Producer) -> None:
        await never.wait()

    monkeypatch.setattr(Producer, "flush", flushes_for_ever)
    monkeypatch.setattr(outbox_module, "STOP_WITHIN", 0.05)
    await outbox.start()
    producer = Producer.made[0]
    producer._sender = Sender()  # type: ignore[attr-defined]
    producer._message_accumulator = Accumulator()  # type: ignore[attr-defined]
    await asyncio.wait_for(outbox.stop(), 60)  # a bound on a hang, not a figure
    assert producer._sender.closed and producer.stopped  # type: ignore[attr-defined]
    assert len(producer._message_accumulator.failed) == 1  # type: ignore[attr-defined]
