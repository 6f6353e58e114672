"""The worker's faust pieces: write-behind ordering, direct delivery checks, raw schema.

The faust objects here are real (an app, its conductor, a topic's stream buffer); none
of them connects to a broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
import pytest
from faust.types import Message

from dialogue_worker.adapters import faust_app
from dialogue_worker.adapters.faust_app import (
    DIRECT,
    FAUST,
    WAIT_FOR_ROOM,
    Delivery,
    DirectDeliveryConsumer,
    QuietMonitor,
    RawSchema,
    WorkerApp,
)
from dialogue_worker.services.write_behind import WriteBehind
from tests.support.waiting import eventually, settle


class Recorder:
    """A write that records start and end, finishing only when released."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.release: dict[str, asyncio.Event] = {}

    async def write(self, batch: str) -> None:
        self.log.append(f"start {batch}")
        gate = self.release.setdefault(batch, asyncio.Event())
        await gate.wait()
        if batch == "bad":
            raise RuntimeError("write failed")
        self.log.append(f"end {batch}")

    async def logged(self, *lines: str) -> None:
        """Wait until the log is `lines`: a submitted write starts on a later turn of the
        loop, after however many awaits WriteBehind takes."""
        await eventually(
            lambda: self.log, until=lambda log: log == list(lines), what=f"log {list(lines)}"
        )


async def test_submit_returns_while_the_write_runs_and_writes_stay_in_order() -> None:
    rec = Recorder()
    writer: WriteBehind[str] = WriteBehind(rec.write)
    await writer.submit("a")  # returned with the write not done: it waits for its release
    await rec.logged("start a")

    second = asyncio.create_task(writer.submit("b"))
    await settle()
    assert not second.done() and rec.log == ["start a"]  # b waits for a
    rec.release["a"].set()
    await second
    await rec.logged("start a", "end a", "start b")
    rec.release["b"].set()
    await writer.flush()
    assert rec.log[-1] == "end b"


async def test_a_failed_write_raises_from_the_next_submit() -> None:
    rec = Recorder()
    writer: WriteBehind[str] = WriteBehind(rec.write)
    await writer.submit("bad")
    rec.release.setdefault("bad", asyncio.Event()).set()
    with pytest.raises(RuntimeError, match="write failed"):
        await writer.submit("next")
    assert "start next" not in rec.log


async def test_cancel_abandons_the_write_in_flight() -> None:
    rec = Recorder()
    writer: WriteBehind[str] = WriteBehind(rec.write)
    await writer.submit("a")
    await rec.logged("start a")
    await writer.cancel()
    assert rec.log == ["start a"]
    await writer.flush()  # nothing left in flight


@pytest.fixture
async def app() -> AsyncIterator[WorkerApp]:
    # Made inside the running loop, so faust and mode take that loop instead of a new one.
    app = WorkerApp("unit-faust", broker="kafka://127.0.0.1:1", stream_buffer_maxsize=4)
    yield app
    if app._consumer is not None:  # its (never started) consumer thread made a loop
        consumer: Any = app.consumer
        consumer._thread.thread_loop.close()


def _stream_buffer(app: WorkerApp) -> Any:
    """A topic channel's stream buffer, made the way an agent's stream makes it."""
    topic: Any = app.topic("messages", schema=RawSchema())
    return topic.queue


class Callback:
    """faust's delivery callback stand-in: records what it was handed."""

    def __init__(self) -> None:
        self.delivered: list[Any] = []

    async def __call__(self, message: Any) -> None:
        self.delivered.append(message)


def _delivery(consumer: DirectDeliveryConsumer, callback: Callback, message: Any) -> Any:
    """What faust's fetch loop passes to wait_first for one record."""
    return consumer.callback(message), consumer.suspend_flow.wait()


async def test_delivery_is_direct_only_while_nothing_can_make_it_wait(app: WorkerApp) -> None:
    consumer = app.consumer
    assert isinstance(consumer, DirectDeliveryConsumer)
    queue = _stream_buffer(app)
    assert app.stream_buffers == [queue]

    assert consumer.delivery_mode() == FAUST  # flow control starts suspended until partitions come
    app.flow_control.resume()
    assert consumer.delivery_mode() == DIRECT

    while not queue.full():
        queue.force_put_nowait(object())
    assert consumer.delivery_mode() == WAIT_FOR_ROOM  # the streams will take some

    consumer.stop_flow()  # a rebalance: faust's own abandonable delivery, even when full
    assert consumer.delivery_mode() == FAUST
    consumer.resume_flow()
    queue.clear()
    assert consumer.delivery_mode() == DIRECT


async def test_a_delivery_that_cannot_wait_is_awaited_without_tasks(app: WorkerApp) -> None:
    consumer: Any = app.consumer
    callback = Callback()
    consumer.callback = lambda message: Delivery(callback, message)
    app.flow_control.resume()
    tasks_before = len(asyncio.all_tasks())

    delivery, suspended = _delivery(consumer, callback, "m1")
    results = await consumer.wait_first(delivery, suspended)

    assert callback.delivered == ["m1"] and results.done == [delivery]
    assert not results.stopped and len(asyncio.all_tasks()) == tasks_before
    assert suspended.cr_frame is None  # closed, never left un-awaited


async def test_a_full_buffer_is_waited_out_then_the_delivery_goes_direct(app: WorkerApp) -> None:
    consumer: Any = app.consumer
    callback = Callback()
    consumer.callback = lambda message: Delivery(callback, message)
    queue = _stream_buffer(app)
    app.flow_control.resume()
    while not queue.full():
        queue.force_put_nowait(object())

    waiting = asyncio.ensure_future(consumer.wait_first(*_delivery(consumer, callback, "m2")))
    await settle()
    assert not waiting.done() and callback.delivered == []
    queue.get_nowait()  # the stream takes one
    await eventually(lambda: waiting.done())
    assert callback.delivered == ["m2"]


async def test_a_rebalance_while_the_buffer_is_full_abandons_the_delivery(
    app: WorkerApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust's contract (issue #229): a delivery stuck on a full buffer gives way when the
    flow is suspended, so the rebalance is not held up by it. It gives way at once, not at
    the next look for room (an hour here): faust resets read offsets at the assignment a
    few milliseconds later, and an abandoned delivery returning after that made faust drop
    the partition's refetched records (test_worker_faust_contract.py caught it)."""
    monkeypatch.setattr(faust_app, "ROOM_POLL_MIN", 3600.0)
    monkeypatch.setattr(faust_app, "ROOM_POLL_MAX", 3600.0)
    consumer: Any = app.consumer
    stuck = asyncio.Event()

    async def blocked(message: Any) -> None:  # a delivery that waits for room for ever
        await stuck.wait()

    consumer.callback = lambda message: Delivery(blocked, message)
    queue = _stream_buffer(app)
    app.flow_control.resume()
    while not queue.full():
        queue.force_put_nowait(object())

    waiting = asyncio.ensure_future(
        consumer.wait_first(consumer.callback("m3"), consumer.suspend_flow.wait())
    )
    await settle()
    assert not waiting.done()
    consumer.stop_flow()  # the rebalance begins
    results = await asyncio.wait_for(waiting, 5)
    assert results.done != [] and not stuck.is_set()


async def test_events_are_faust_events(app: WorkerApp) -> None:
    message = Message("messages", 0, 7, 0.0, 0, [], b"cid", b"{}", None)
    event = app.create_event(b"cid", b"{}", [], message)
    assert isinstance(event, faust.Event) and event.message is message
    assert app.create_event(b"k", b"v", [], message).value == b"v"


def test_raw_schema_hands_over_the_record_bytes() -> None:
    message = Message("messages", 0, 7, 0.0, 0, [], b"cid", b'{"v":1}', None)
    schema = RawSchema()
    assert schema.loads_key(None, message) == b"cid"
    assert schema.loads_value(None, message) == b'{"v":1}'


async def test_the_app_uses_the_quiet_monitor(app: WorkerApp) -> None:
    assert isinstance(app.monitor, QuietMonitor)
