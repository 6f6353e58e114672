"""The worker's faust pieces: write-behind ordering, direct delivery checks, raw schema.

The faust objects here are real (an app, its conductor, a topic's stream buffer); none
of them connects to a broker.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from collections.abc import AsyncIterator
from typing import Any

import faust
import faust.transport.consumer
import pytest
from faust.types import TP, Message

from dialogue_worker.adapters.faust_app import (
    DIRECT,
    FAUST,
    FAUST_DRAIN_SOURCE_SHA256,
    WAIT_FOR_ROOM,
    DirectDeliveryConsumer,
    QuietMonitor,
    RawSchema,
    WorkerApp,
)
from dialogue_worker.entrypoints.agent import WriteBehind


def test_the_copied_fetch_loop_matches_the_installed_faust() -> None:
    source = inspect.getsource(faust.transport.consumer.Consumer._drain_messages)
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert digest == FAUST_DRAIN_SOURCE_SHA256, (
        "faust-streaming's Consumer._drain_messages changed: compare it with "
        "DirectDeliveryConsumer._drain_messages, carry the change over, update the hash"
    )


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


async def test_submit_returns_while_the_write_runs_and_writes_stay_in_order() -> None:
    rec = Recorder()
    writer: WriteBehind[str] = WriteBehind(rec.write)
    await writer.submit("a")
    await asyncio.sleep(0)
    assert rec.log == ["start a"]  # submit did not wait for the write

    second = asyncio.create_task(writer.submit("b"))
    await asyncio.sleep(0.01)
    assert not second.done() and rec.log == ["start a"]  # b waits for a
    rec.release["a"].set()
    await second
    await asyncio.sleep(0)
    assert rec.log == ["start a", "end a", "start b"]
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
    await asyncio.sleep(0)
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


def _stream_buffer(app: WorkerApp, tp: TP) -> Any:
    """A topic channel registered for `tp` the way the conductor indexes its channels."""
    topic: Any = app.topic(tp.topic, schema=RawSchema())
    conductor: Any = app.topics
    conductor._tp_index[tp].add(topic)
    return topic.queue


async def test_delivery_is_direct_only_while_nothing_can_make_it_wait(app: WorkerApp) -> None:
    consumer = app.consumer
    assert isinstance(consumer, DirectDeliveryConsumer)
    tp = TP("messages", 0)
    queue = _stream_buffer(app, tp)
    delivery = consumer.delivery_check()

    assert delivery(tp) == FAUST  # flow control starts suspended until partitions come
    app.flow_control.resume()
    assert delivery(tp) == DIRECT

    while not queue.full():
        queue.force_put_nowait(object())
    assert delivery(tp) == WAIT_FOR_ROOM  # the streams will take some: no task per record

    consumer.stop_flow()  # a rebalance: faust's own abandonable delivery, even when full
    assert delivery(tp) == FAUST
    consumer.resume_flow()
    queue.clear()
    assert delivery(tp) == DIRECT


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
