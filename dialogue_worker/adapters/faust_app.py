"""The worker's faust.App: per-record costs of faust-streaming taken out of the hot path.

Profiling the worker (py-spy, a pre-filled topic) showed faust's own per-record work as
most of its CPU. Four pieces of it are cut here without changing what faust guarantees:

1. Delivery (`DirectDeliveryConsumer`). faust's fetch loop (`Consumer._drain_messages`)
   hands over every record with `await self.wait_first(callback(message),
   self.suspend_flow.wait())`: four tasks and an `asyncio.wait` per record, so that a
   delivery stuck on a full stream buffer can be abandoned when a rebalance suspends the
   flow (faust-streaming issue #229). This was about a third of the worker's CPU. Here
   the delivery is awaited directly when it cannot suspend (flow running, conductor not
   rebuilding its callback map, faust's producer buffer under its limit, the partition's
   stream buffer not full); while only a full buffer is in the way the loop waits for
   room with a timer; in every other case it does exactly what faust does. The loop is
   faust-streaming 0.15.3's, changed only there; `FAUST_DRAIN_SOURCE_SHA256` pins the
   upstream source and a unit test fails when an upgrade changes it.
2. Codecs (`RawSchema`). The worker reads raw bytes; the schema skips faust's codec
   registry instead of looking up the "raw" codec twice per record.
3. Sensors (`QuietMonitor`). faust's Monitor keeps per-event timings for its own stats
   page, which the worker does not serve (its metrics are in dialogue_worker.metrics).
4. Settings look-ups per record: `WorkerApp.create_event` keeps the Event class.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import faust
from faust.sensors import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from mode import Service

#: How often a fetch loop held up by a full stream buffer looks again: from 1 ms,
#: doubling up to 50 ms while the streams take nothing (e.g. MongoDB is down).
ROOM_POLL_MIN = 0.001
ROOM_POLL_MAX = 0.05

#: How `DirectDeliveryConsumer` hands a record over (see `delivery_check`).
DIRECT, WAIT_FOR_ROOM, FAUST = 0, 1, 2

#: sha256 of `inspect.getsource(faust.transport.consumer.Consumer._drain_messages)`.
FAUST_DRAIN_SOURCE_SHA256 = "44a2500309e83c630493f6828af50166ec8d96a0b3e4fb2bab735f704ae93417"


class DirectDeliveryConsumer(aiokafka_driver.Consumer):
    def delivery_check(self) -> Callable[[TP], int]:
        """Per record of a partition: how to hand it to the streams.

        `DIRECT` when that cannot suspend; `WAIT_FOR_ROOM` when only a full stream buffer
        is in the way (the streams are taking records, so waiting costs one timer, not a
        task per record); `FAUST` otherwise. Mirrors the waits in faust's delivery
        callback (`ConductorCompiler.build`): flow control, the producer buffer, a full
        stream buffer, and the conductor's lock.
        """
        app = self.app
        flow_suspended = self.suspend_flow.is_set
        stopped = self._stopped.is_set
        flow_active = app.flow_control.is_active
        conductor: Any = app.topics  # faust's Conductor; its lock and index are private
        rebuilding = conductor._tp_to_callback_lock.locked
        channels_of = conductor._tp_index.get
        buffer: Any = app.producer.buffer
        limit = buffer.max_messages

        def producer_backlog() -> int:  # ProducerBuffer.size, without reading settings
            return 0 if buffer.queue is None else int(buffer.queue.qsize())

        backlog = producer_backlog if app.conf.producer_threaded else buffer.pending.qsize

        def check(tp: TP) -> int:
            if flow_suspended() or stopped() or rebuilding() or not flow_active():
                return FAUST
            for channel in channels_of(tp, ()):
                if channel.queue.full():
                    return WAIT_FOR_ROOM
            return DIRECT if backlog() <= limit else FAUST

        return check

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover
        # Copied from faust-streaming 0.15.3 faust/transport/consumer.py (BSD-3-Clause);
        # the only change is the delivery marked "changed" below.
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        delivery = self.delivery_check()

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = getmany(timeout=1.0)

                # Sleeping because sometimes getmany is called in a loop
                # never releasing to the event loop
                await self.sleep(0)
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            # We have a gap in income messages
                            if gap > 1 and r_offset:
                                acks_enabled = acks_enabled_for(message.topic)
                                if acks_enabled:
                                    await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None:
                                if self._n_acked >= commit_every:
                                    self._n_acked = 0
                                    await self.commit()
                            # changed: no tasks when the delivery cannot block, and a
                            # full stream buffer is waited out before delivering.
                            how = delivery(tp)
                            pause = ROOM_POLL_MIN
                            while how == WAIT_FOR_ROOM and not fetcher_should_stop():
                                await sleep(pause)
                                pause = min(2 * pause, ROOM_POLL_MAX)
                                how = delivery(tp)
                            if how == DIRECT:
                                await callback(message)
                            else:
                                await self.wait_first(callback(message), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                        else:
                            self.log.dev(
                                "DROPPED MESSAGE ROFF %r: k=%r v=%r",
                                offset,
                                message.key,
                                message.value,
                            )
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                # we're already stopping so ignore
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


class DirectDeliveryTransport(aiokafka_driver.Transport):
    Consumer = DirectDeliveryConsumer


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


class WorkerApp(faust.App):
    """faust.App with `DirectDeliveryConsumer` (kafka:// brokers) and `QuietMonitor`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("Monitor", QuietMonitor)
        super().__init__(*args, **kwargs)

    def create_event(self, key: Any, value: Any, headers: Any, message: Any) -> Any:
        # faust's version reads the Event class from the settings for every record.
        event_class: Any = self.__dict__.get("_event_class")
        if event_class is None:
            event_class = self.__dict__["_event_class"] = self.conf.Event
        return event_class(self, key, value, headers, message)

    def _new_transport(self) -> Any:
        return DirectDeliveryTransport(self.conf.broker_consumer, self)
