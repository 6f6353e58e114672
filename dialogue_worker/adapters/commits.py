"""The worker commits its topic's offsets itself, from what it made durable.

faust's acks are off for the message topic (`acks=False`), so faust neither tracks nor
commits it. `OffsetCommitter` commits each assigned partition up to
`DurableOffsets.through` (domain.offsets): on a timer, when partitions are revoked, and
at shutdown. A record the consumer skipped holds its partition's commit until it is
delivered again (services.ordering seeks back to it) instead of being passed over.

Offsets without a record (transaction markers, records removed by retention) are never
marked durable by a write: services.ordering marks them done once Kafka shows them empty
(`KafkaPositions.first_record`, a read by a consumer outside the group).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP

from dialogue_worker.domain.offsets import DurableOffsets
from dialogue_worker.metrics import WorkerMetrics
from platform_common.kafka import ScopedAdminClient, ScopedConsumer

log = logging.getLogger(__name__)
Tp = tuple[str, int]
#: Longest a probe for the first record after an offset may take (seconds).
PROBE_WITHIN = 10.0
#: Longest the committer's part of a rebalance may take (faust gives the whole
#: rebalance the session timeout, 10 s).
REBALANCE_STEP_WITHIN = 5.0
#: Longest one commit on the timer may take (seconds).
COMMIT_WITHIN = 5.0


class KafkaPositions:
    """What Kafka says about the group's partitions: committed offsets, log starts, and
    the first record at or after an offset (read by a consumer outside the group)."""

    def __init__(self, bootstrap: str, group_id: str, topic: str) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._topic = topic
        self._admin: ScopedAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._probing = asyncio.Lock()

    async def start(self) -> None:
        admin = ScopedAdminClient(
            bootstrap_servers=self._bootstrap,
            client_id="dialogue-worker-offsets",
            metadata_topics=(self._topic,),
        )
        consumer = ScopedConsumer(
            metadata_topics=(self._topic,),
            bootstrap_servers=self._bootstrap,
            client_id="dialogue-worker-probe",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # an offset removed by retention: the next there is
        )
        await admin.start()
        try:
            await consumer.start()
        except BaseException:
            await admin.close()
            raise
        self._admin, self._consumer = admin, consumer

    async def stop(self) -> None:
        admin, consumer, self._admin, self._consumer = self._admin, self._consumer, None, None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()

    async def committed(self, tps: Iterable[Tp]) -> dict[Tp, int | None]:
        """The group's committed offset of each partition (None: never committed)."""
        wanted = [TopicPartition(t, p) for t, p in tps]
        if not wanted:
            return {}
        found = await self._started(self._admin).list_consumer_group_offsets(
            self._group_id, partitions=wanted
        )
        result: dict[Tp, int | None] = dict.fromkeys(((t, p) for t, p in wanted), None)
        for tp, meta in found.items():
            result[(tp.topic, tp.partition)] = meta.offset if meta.offset >= 0 else None
        return result

    async def earliest(self, tps: Iterable[Tp]) -> dict[Tp, int]:
        """The first offset each partition still holds."""
        wanted = [TopicPartition(t, p) for t, p in tps]
        if not wanted:
            return {}
        found = await self._started(self._consumer).beginning_offsets(wanted)
        return {(tp.topic, tp.partition): offset for tp, offset in found.items()}

    async def first_record(self, tp: Tp, offset: int, end: int) -> int | None:
        """The offset of the first record at or after `offset` and below `end`, or None."""
        consumer = self._started(self._consumer)
        part = TopicPartition(*tp)
        async with self._probing, asyncio.timeout(PROBE_WITHIN):
            consumer.assign([part])
            consumer.seek(part, offset)
            while True:
                fetched = await consumer.getmany(part, timeout_ms=200, max_records=1)
                records = fetched.get(part, [])
                if records:
                    first: int = records[0].offset
                    return first if first < end else None
                if await consumer.position(part) >= end:
                    return None

    @staticmethod
    def _started(client: Any) -> Any:
        if client is None:
            raise RuntimeError("KafkaPositions used before start()")
        return client


class KafkaPartitionLog:
    """services.ports.PartitionLog: Kafka's records (KafkaPositions), faust's seek."""

    def __init__(self, app: Any, positions: KafkaPositions) -> None:
        self._app = app
        self._positions = positions

    async def first_record(self, tp: Tp, offset: int, end: int) -> int | None:
        return await self._positions.first_record(tp, offset, end)

    async def start(self, tp: Tp) -> int:
        # Bounded as the probe is: asked in the agent's batch, which waits for it (aiokafka
        # alone would wait its request timeout, 40 s; found in review).
        async with asyncio.timeout(PROBE_WITHIN):
            return (await self._positions.earliest([tp]))[tp]

    async def rewind(self, tp: Tp, offset: int) -> None:
        """Seek through faust's consumer thread (`seek_wait`), if still assigned."""
        await seek_back(self._app, tp, offset)


async def seek_back(app: Any, tp: Tp, offset: int) -> None:
    """Read a partition again from `offset`: aiokafka's seek runs in faust's consumer
    thread (`seek_wait`), which also resets faust's read offset. A partition revoked
    meanwhile is left alone: its new owner reads it from the committed offset."""
    consumer = app.consumer
    part = TP(*tp)
    if part in consumer.assignment():
        await consumer.seek_wait({part: offset})


class OffsetCommitter:
    """Commits the topic's assigned partitions up to where they are durable."""

    def __init__(
        self,
        app: Any,
        ledger: DurableOffsets,
        positions: KafkaPositions,
        topic: str,
        metrics: WorkerMetrics,
    ) -> None:
        self._app = app
        self._ledger = ledger
        self._positions = positions
        self._topic = topic
        self._metrics = metrics
        self._committed: dict[Tp, int] = {}
        self._timed: asyncio.Future[Mapping[Tp, int]] | None = None  # the timer's commit

    def _ours(self, tps: Iterable[Any]) -> list[Tp]:
        return sorted((tp.topic, tp.partition) for tp in tps if tp.topic == self._topic)

    async def assigned(self, tps: Iterable[Any]) -> None:
        """faust assigned these partitions: learn where each starts."""
        ours = self._ours(tps)
        self._ledger.assign(ours)
        await self.learn()  # on failure `tick` tries again; nothing commits meanwhile

    async def revoked(self, tps: Iterable[Any]) -> None:
        """faust is giving these partitions up: commit what is durable, then forget them."""
        ours = self._ours(tps)
        try:
            async with asyncio.timeout(REBALANCE_STEP_WITHIN):
                await self.commit(ours)
        except TimeoutError:  # the next owner reads these records again: repeats, no loss
            log.warning("commit at revocation timed out")
        self._ledger.revoke(ours)
        for tp in ours:
            self._committed.pop(tp, None)

    async def tick(self) -> None:
        """On the commit timer: learn the starts not known yet, then commit, waiting at
        most COMMIT_WITHIN (a commit hanging on an unreachable coordinator stopped the
        timer's later ticks for as long as aiokafka retried). The commit itself runs on in
        faust's consumer thread, where cancelling the wait does not reach it: no tick
        starts another while it runs, or hung commits would fill that thread's two
        workers (seeks wait behind them) and could land out of order."""
        await self.learn()
        if self._timed is not None and not self._timed.done():
            return
        self._timed = asyncio.ensure_future(self.commit())
        try:
            await asyncio.wait_for(asyncio.shield(self._timed), COMMIT_WITHIN)
        except TimeoutError:  # recorded as committed only when it ends
            self._metrics.commit_failures.inc()
            log.warning("offset commit unanswered after %gs; the next waits for it", COMMIT_WITHIN)

    async def commit(self, tps: Iterable[Tp] | None = None) -> Mapping[Tp, int]:
        """Commit every given (default: assigned) partition that moved since its last commit.

        A commit of the timer's still running is waited for first (callers bound the
        wait): sent beside it, the revocation's or the shutdown's commit could land before
        it, and its older offsets last, under the next owner's generation too (found in
        review)."""
        timed = self._timed
        if timed is not None and not timed.done() and timed is not asyncio.current_task():
            await asyncio.shield(timed)
        wanted = self._ledger.assigned() if tps is None else list(tps)
        offsets: dict[Tp, int] = {}
        for tp in wanted:
            through = self._ledger.through(tp)
            if through is not None and through > self._committed.get(tp, -1):
                offsets[tp] = through
        if not offsets:
            return {}
        try:
            # faust's transport-level commit (what its own commit calls): one OffsetCommit
            # request for these offsets, refused (False) when the group has rebalanced.
            done = await self._app.consumer._commit({TP(*tp): o for tp, o in offsets.items()})
        except Exception as exc:
            done = False
            log.warning("offset commit failed: %s", exc)
        if not done:
            self._metrics.commit_failures.inc()
            return {}
        # Only of partitions still held: one revoked meanwhile is another owner's now.
        held = set(self._ledger.assigned())
        self._committed.update({tp: o for tp, o in offsets.items() if tp in held})
        return offsets

    async def learn(self) -> None:
        """Read the committed offsets of partitions whose start is not known (bounded)."""
        try:
            async with asyncio.timeout(REBALANCE_STEP_WITHIN):
                await self._learn()
        except Exception as exc:
            log.warning("could not read committed offsets: %s", exc)

    async def _learn(self) -> None:
        unknown = self._ledger.unknown()
        if not unknown:
            return
        committed = await self._positions.committed(unknown)
        never = [tp for tp, offset in committed.items() if offset is None]
        starts = await self._positions.earliest(never) if never else {}
        for tp in unknown:
            offset = committed.get(tp)
            start = offset if offset is not None else starts.get(tp)
            if start is not None:
                self._ledger.begin(tp, start)
                self._committed[tp] = max(self._committed.get(tp, -1), start)
