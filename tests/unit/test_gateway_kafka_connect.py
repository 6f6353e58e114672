"""The gateway's producer start: bounded, so a Kafka that answers metadata but grants no
producer id (no controller quorum, a broker starting) leaves the gateway starting and
the producer connecting in the background. aiokafka's start is stood in for by a
hand-written producer whose start waits until the test lets it finish."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import OutOfOrderSequenceNumber

from contracts.errors import ErrorCode
from contracts.ids import new_id
from contracts.records import MessageRecord
from gateway.adapters.kafka_bus import KafkaBus
from gateway.errors import GatewayError
from tests.support.waiting import eventually


def a_record() -> MessageRecord:
    return MessageRecord(v=1, id=new_id(), cid=new_id(), uid=1, text="hi", createdAt=1_700_000_000)


class StandIn:
    """What KafkaBus uses of a producer at start and stop (nothing is ever sent)."""

    def __init__(self, granted: asyncio.Event) -> None:
        self.granted = granted
        self.started = False
        self.stopped = False

    async def start(self) -> None:
        await self.granted.wait()  # aiokafka's wait for a producer id
        self.started = True

    async def flush(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True


async def test_a_producer_start_that_waits_for_ever_does_not_hold_the_gateway(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    granted = asyncio.Event()
    made: list[StandIn] = []

    def new_producer(self: Any) -> StandIn:
        made.append(StandIn(granted))
        return made[-1]

    monkeypatch.setattr(KafkaBus, "_new_producer", new_producer)
    bus = KafkaBus("127.0.0.1:9", "topic", send_timeout=0.2)
    await asyncio.wait_for(bus.start(), 60)  # a bound on a hang, not a figure
    assert bus._producer is None and made[0].stopped  # the first try given up, and stopped
    await eventually(lambda: len(made) >= 2, what="another try in the background")
    granted.set()  # quorum is back: the next try starts
    await eventually(lambda: bus._producer is not None, what="the producer started")
    assert bus._producer.started
    await bus.stop()


class Sending(StandIn):
    """A started producer whose sends fail with `failure` (None: they are acknowledged)."""

    def __init__(self, failure: Exception | None) -> None:
        granted = asyncio.Event()
        granted.set()
        super().__init__(granted)
        self.failure = failure
        self.sent: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failure is None:
            self.sent.append(value)
            done.set_result(None)
        else:
            done.set_exception(self.failure)
        return done


async def test_a_producer_out_of_step_with_the_broker_is_made_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka never renews its producer after OutOfOrderSequenceNumber (issue #1017):
    kept, every later post to that partition failed with 5031."""
    made: list[Sending] = []

    def new_producer(self: Any) -> Sending:
        made.append(Sending(OutOfOrderSequenceNumber() if not made else None))
        return made[-1]

    monkeypatch.setattr(KafkaBus, "_new_producer", new_producer)
    bus = KafkaBus("127.0.0.1:9", "topic", send_timeout=5.0)
    await bus.start()
    record = a_record()
    with pytest.raises(GatewayError) as failed:
        await bus.publish(record)
    assert failed.value.code is ErrorCode.BUS_UNAVAILABLE  # at once: stopping is not waited
    await eventually(lambda: bus._producer is not None, what="a new producer")
    assert made[0].stopped
    await bus.publish(record)
    assert made[1].sent == [record.to_bytes()]
    await bus.stop()


class Flushing(Sending):
    """A producer out of step with the broker whose flush waits until `released`."""

    def __init__(self, released: asyncio.Event) -> None:
        super().__init__(OutOfOrderSequenceNumber())
        self.released = released
        self.flushing = False

    async def flush(self) -> None:
        self.flushing = True
        await self.released.wait()


async def test_stopping_while_a_replaced_producer_flushes_still_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shutdown used to cancel the task closing the replaced producer mid-flush: the
    producer was never stopped, its sender and connections left running."""
    released = asyncio.Event()
    made: list[Sending] = []

    def new_producer(self: Any) -> Sending:
        made.append(Flushing(released) if not made else Sending(None))
        return made[-1]

    monkeypatch.setattr(KafkaBus, "_new_producer", new_producer)
    bus = KafkaBus("127.0.0.1:9", "topic", send_timeout=30.0)
    await bus.start()
    record = a_record()
    with pytest.raises(GatewayError):
        await bus.publish(record)
    old = made[0]
    assert isinstance(old, Flushing)
    await eventually(lambda: old.flushing, what="the replaced producer flushing")
    stopping = asyncio.ensure_future(bus.stop())
    await eventually(lambda: bus._connector is None, what="the connector cancelled")
    released.set()  # Kafka takes what the old producer held
    await asyncio.wait_for(stopping, 60)  # a bound on a hang, not a figure
    assert old.stopped
