"""The one shared Kafka producer: acks=all, idempotent, every send bounded in time."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from aiokafka.errors import KafkaError

from contracts.errors import ErrorCode
from contracts.records import MessageRecord
from gateway.errors import GatewayError
from platform_common.kafka import STALE_PRODUCER, ScopedProducer, close_producer
from platform_common.retry import Backoff, retry

log = logging.getLogger(__name__)


def _unavailable(reason: str) -> GatewayError:
    return GatewayError(ErrorCode.BUS_UNAVAILABLE, f"message bus unavailable: {reason}")


def _late_outcome(
    message_id: str, delivered: Callable[[], None] | None, delivery: asyncio.Future[Any]
) -> None:
    """Log what became of a record whose sender already got 5031, and say so when it was
    delivered after all."""
    if delivery.cancelled():
        return
    exc = delivery.exception()
    if exc is None:
        log.warning("record delivered after its send timed out", extra={"message_id": message_id})
        if delivered is not None:
            delivered()
    else:
        log.warning("record never delivered: %s", exc, extra={"message_id": message_id})


class KafkaBus:
    """Owns the producer. If Kafka is down at start the producer is (re)connected in the
    background; until then every publish answers 5031 at once."""

    def __init__(self, bootstrap: str, topic: str, send_timeout: float) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._send_timeout = send_timeout
        self._producer: Any = None
        self._connector: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Future[None]] = set()  # replaced producers, stopping

    def _new_producer(self) -> Any:
        timeout_ms = int(self._send_timeout * 1000)
        return ScopedProducer(
            metadata_topics=(self._topic,),
            bootstrap_servers=self._bootstrap,
            client_id="dialogue-gateway",
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=timeout_ms,
            retry_backoff_ms=100,
            linger_ms=0,
        )

    async def start(self) -> None:
        if self._producer is not None or self._connector is not None:
            return
        if not await self._connect_once():
            self._connector = asyncio.create_task(self._keep_connecting(), name="kafka-connect")

    async def stop(self) -> None:
        connector, self._connector = self._connector, None
        if connector is not None:
            connector.cancel()
            await asyncio.gather(connector, return_exceptions=True)
        # A producer being replaced is closed by a task of its own, which cancelling the
        # connector does not reach: cancelled half-way, it was never stopped (found in
        # review). Bounded like every close.
        await asyncio.gather(*self._closing, return_exceptions=True)
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._close(producer)

    async def _close(self, producer: Any) -> None:
        """Flush for at most the send timeout, then drop what Kafka never took (their
        senders got 5031)."""
        if not await close_producer(producer, self._send_timeout, "gateway stopping"):
            log.warning("Kafka unreachable at shutdown; dropped records never acknowledged")

    async def _connect_once(self) -> bool:
        try:
            await self._connect()
        except (KafkaError, OSError) as exc:
            log.warning("Kafka producer cannot start yet: %s", exc)
            return False
        return True

    async def _connect(self) -> None:
        producer = self._new_producer()
        try:
            # aiokafka's start waits for a producer id for ever when a broker answers
            # metadata but none grants one (no controller quorum, a broker starting): the
            # gateway never listened (found in review). Bounded, it is a failed try (a
            # TimeoutError, an OSError), and the connector goes on in the background.
            async with asyncio.timeout(self._send_timeout):
                await producer.start()
        except BaseException:
            await self._abandon(producer)
            raise
        self._producer = producer
        log.info("Kafka producer started", extra={"bootstrap": self._bootstrap})

    async def _abandon(self, producer: Any) -> None:
        """Stop a producer that did not start, without waiting on it for long either."""
        try:
            async with asyncio.timeout(self._send_timeout):
                await producer.stop()
        except TimeoutError:
            log.warning("a Kafka producer that did not start did not stop in time either")

    async def _keep_connecting(self) -> None:
        def unreachable(exc: Exception) -> bool:
            return isinstance(exc, KafkaError | OSError)

        def report(exc: Exception, delay: float) -> None:
            log.warning("Kafka producer cannot start yet (%s); retrying in %.1f s", exc, delay)

        await retry(
            self._connect, retry_on=unreachable, backoff=Backoff(0.5, 5.0), on_failure=report
        )
        self._connector = None

    async def publish(
        self, record: MessageRecord, delivered_late: Callable[[], None] | None = None
    ) -> None:
        producer = self._producer
        if producer is None:
            raise _unavailable("not connected")
        delivery: asyncio.Future[Any] | None = None
        try:
            async with asyncio.timeout(self._send_timeout):
                delivery = await producer.send(self._topic, record.to_bytes(), key=record.key())
                await asyncio.shield(delivery)
        except TimeoutError:
            log.warning("Kafka send timed out", extra={"message_id": record.id})
            if delivery is not None:
                late = functools.partial(_late_outcome, record.id, delivered_late)
                delivery.add_done_callback(late)
            raise _unavailable("no acknowledgement in time") from None
        except KafkaError as exc:
            log.warning("Kafka send failed: %s", exc, extra={"message_id": record.id})
            if isinstance(exc, STALE_PRODUCER):
                self._renew(producer)
            raise _unavailable(type(exc).__name__) from None

    def _renew(self, producer: Any) -> None:
        """Drop a producer whose sequence numbers are out of step with the broker's and
        connect a new one in the background (each post meanwhile answers 5031). Kept, it
        failed every later post to that partition (aiokafka issue #1017; found in review)."""
        if self._producer is not producer:
            return  # another post renewed it already
        self._producer = None
        log.warning("Kafka producer out of step with the broker: making a new one")
        if self._connector is None:
            # Stopping the old one waits for its batches (up to the send timeout): in the
            # background, before connecting again, so this post answers 5031 at once.
            self._connector = asyncio.create_task(self._replace(producer), name="kafka-reconnect")

    async def _replace(self, producer: Any) -> None:
        closing = asyncio.ensure_future(self._close(producer))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)
        await asyncio.shield(closing)
        await self._keep_connecting()

    async def ready(self) -> bool:
        """True when the producer runs and the broker answers metadata for the topic."""
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(min(2.0, self._send_timeout)):
                updated = await producer.client.force_metadata_update()
        except TimeoutError:
            return False
        return (
            bool(updated) and producer.client.cluster.partitions_for_topic(self._topic) is not None
        )
