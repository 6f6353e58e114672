"""The worker's faust.App: per-record costs of faust-streaming taken out of the hot path.

Profiling the worker (py-spy, a pre-filled topic) showed faust's own per-record work as
most of its CPU. Four pieces of it are cut here without changing what faust guarantees:

1. Delivery (`DirectDeliveryConsumer`). faust's fetch loop hands every record over with
   `await self.wait_first(callback(message), self.suspend_flow.wait())`: four tasks and
   an `asyncio.wait` per record, so that a delivery stuck (on flow control, faust's
   producer buffer or a full stream buffer) can be abandoned when a rebalance suspends
   the flow (faust-streaming issue #229). This was about a third of the worker's CPU.
   The consumer overrides `wait_first` for exactly that call: when the delivery cannot
   suspend, it is awaited directly; while only a full stream buffer is in the way, a
   timer waits for room; in every other case faust's own `wait_first` runs.
2. Codecs (`RawSchema`). The worker reads raw bytes; the schema skips faust's codec
   registry instead of looking up the "raw" codec twice per record.
3. Sensors (`QuietMonitor`). faust's Monitor keeps per-event timings for its own stats
   page, which the worker does not serve (its metrics are in dialogue_worker.metrics).
4. Settings look-ups per record: `WorkerApp.create_event` keeps the Event class.

What "cannot suspend" relies on, and the tests that pin it (tests/unit/test_worker_faust.py,
tests/integration/test_worker_faust_contract.py): faust's delivery callback waits only on
flow control, on its producer buffer, on a full stream buffer, and on the conductor's
lock. The first three are checked through public attributes. The lock is held only while
the conductor rebuilds its subscription (`Conductor._update_indices`), which in this app
happens once, before the first assignment resumes the flow; an app that changes its
topics at run time should not use this consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import faust
from faust.sensors import Monitor
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from faust.web.drivers import aiohttp as aiohttp_web
from mode.services import WaitResults

from platform_common.http_server import JsonRefusingRunner
from platform_common.kafka import ScopedProducer

#: How often a delivery held up by a full stream buffer looks again: from 1 ms,
#: doubling up to 50 ms while the streams take nothing (e.g. MongoDB is down).
#: Seconds a connection to the worker's API may take to send a request head (a client
#: trickling one, or opening connections and sending nothing, held them for ever). More
#: than the gateway keeps a pooled connection idle (discovery.client.POOL_IDLE).
HEAD_WITHIN = 30.0
ROOM_POLL_MIN = 0.001
ROOM_POLL_MAX = 0.05

#: How `DirectDeliveryConsumer` hands a record over (see `delivery_mode`).
DIRECT, WAIT_FOR_ROOM, FAUST = 0, 1, 2


class Delivery:
    """One record's delivery: awaits faust's callback, and says which record it is for."""

    __slots__ = ("_callback", "message")

    def __init__(self, callback: Callable[[Any], Awaitable[None]], message: Any) -> None:
        self._callback = callback
        self.message = message

    def __await__(self) -> Generator[Any, None, None]:
        return self._callback(self.message).__await__()


def _discard(waitable: object) -> None:
    """Drop an argument of wait_first that will not be awaited (a coroutine must be closed)."""
    if inspect.iscoroutine(waitable):
        waitable.close()


class DirectDeliveryConsumer(aiokafka_driver.Consumer):
    """faust's aiokafka consumer; a record that can be delivered without waiting is."""

    def __init__(self, transport: Any, callback: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(transport, lambda message: Delivery(callback, message), *args, **kwargs)

    def delivery_mode(self) -> int:
        """`DIRECT` when faust's delivery callback cannot wait; `WAIT_FOR_ROOM` when only a
        full stream buffer is in the way; `FAUST` otherwise (flow suspended or stopping,
        flow control inactive, faust's producer buffer over its limit)."""
        app: Any = self.app
        if self.suspend_flow.is_set() or self.should_stop or not app.flow_control.is_active():
            return FAUST
        buffer = app.producer.buffer
        if buffer.size > buffer.max_messages:
            return FAUST
        for queue in app.stream_buffers:
            if queue.full():
                return WAIT_FOR_ROOM
        return DIRECT

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:  # noqa: ASYNC109 (mode.Service signature)
        if timeout is None and len(coros) == 2 and isinstance(coros[0], Delivery):
            delivery, suspended = coros
            if await self._ready_to_deliver():
                _discard(suspended)
                await delivery
                return WaitResults([delivery], [None], False)
        return await super().wait_first(*coros, timeout=timeout)

    async def _ready_to_deliver(self) -> bool:
        """True once the delivery can go directly; False when faust's race must run.

        While waiting for room it wakes at once when a rebalance suspends the flow, as
        faust's own race does: faust records the abandoned record's offset as read when
        `wait_first` returns, and the new assignment (milliseconds later) resets the read
        offsets. Returning after that reset would make faust drop the partition's records
        below the stale offset when they are fetched again, so they would never be acked
        and the partition's commit would stop there.
        """
        pause = ROOM_POLL_MIN
        while (mode := self.delivery_mode()) == WAIT_FOR_ROOM:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self.suspend_flow.wait()
            pause = min(2 * pause, ROOM_POLL_MAX)
        return mode == DIRECT


class ScopedFaustProducer(aiokafka_driver.Producer):
    """faust's producer (the worker sends nothing through it; faust flushes it before
    commits) with its metadata scoped to the app's `kafka_topics`, not the cluster's
    every topic (platform_common.kafka says why)."""

    @property
    def _producer_type(self) -> Any:
        topics = getattr(self.app, "kafka_topics", ())
        return functools.partial(ScopedProducer, metadata_topics=topics)


class DirectDeliveryTransport(aiokafka_driver.Transport):
    Consumer = DirectDeliveryConsumer
    Producer = ScopedFaustProducer


class RawSchema(faust.Schema):  # type: ignore[type-arg]
    """Keys and values stay the record's bytes, without a trip through faust's codecs."""

    def loads_key(self, app: Any, message: Any, **_: Any) -> Any:
        return message.key

    def loads_value(self, app: Any, message: Any, **_: Any) -> Any:
        return message.value


class QuietMonitor(Monitor):
    """faust's Monitor without its four per-event hooks (commits, offsets etc. still kept)."""

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        return None


class WorkerWeb(aiohttp_web.Web):
    """faust's aiohttp web driver on a `JsonRefusingRunner`: a request aiohttp's parser
    refuses (a request line or header too long, a control byte) is answered in the
    platform's error body rather than faust's runner's plain text and ERROR traceback."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        # keepalive_timeout: aiohttp closes a connection that has not sent a complete
        # request head within it (from its opening, or after the previous answer).
        self._runner = JsonRefusingRunner(
            self.web_app, access_log=None, keepalive_timeout=HEAD_WITHIN
        )


class WorkerApp(faust.App):
    """faust.App with `DirectDeliveryConsumer` (kafka:// brokers), `QuietMonitor` and
    `WorkerWeb`.

    `stream_buffers` lists every stream buffer the app made, so the consumer can tell
    whether a delivery would wait for room.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("Monitor", QuietMonitor)
        super().__init__(*args, **kwargs)
        self.stream_buffers: list[Any] = []
        #: The topics faust's own producer tracks metadata of (set by bootstrap).
        self.kafka_topics: tuple[str, ...] = ()

    def FlowControlQueue(self, maxsize: int | None = None, *, clear_on_resume: bool = False) -> Any:
        queue = super().FlowControlQueue(maxsize, clear_on_resume=clear_on_resume)
        self.stream_buffers.append(queue)
        return queue

    def create_event(self, key: Any, value: Any, headers: Any, message: Any) -> Any:
        # faust's version reads the Event class from the settings for every record.
        event_class: Any = self.__dict__.get("_event_class")
        if event_class is None:
            event_class = self.__dict__["_event_class"] = self.conf.Event
        return event_class(self, key, value, headers, message)

    def _new_transport(self) -> Any:
        return DirectDeliveryTransport(self.conf.broker_consumer, self)

    def _new_web(self) -> Any:
        return WorkerWeb(self)
