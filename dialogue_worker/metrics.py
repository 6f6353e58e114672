"""Prometheus metrics of one worker, in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

LagReader = Callable[[], Mapping[tuple[str, int], int]]
StuckCounter = Callable[[], int]


class _PartitionCollector(Collector):
    def __init__(self, lags: LagReader, stuck: StuckCounter) -> None:
        self._lags = lags
        self._stuck = stuck

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "dialogue_worker_consumer_lag",
            "Records in assigned partitions not yet persisted (high watermark - next offset).",
            labels=["topic", "partition"],
        )
        for (topic, partition), value in sorted(self._lags().items()):
            lag.add_metric([topic, str(partition)], value)
        yield lag
        yield GaugeMetricFamily(
            "dialogue_worker_stuck_partitions",
            "Assigned partitions with lag whose position has not moved for STALL_AFTER seconds.",
            value=self._stuck(),
        )


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.persisted = Counter(
            "dialogue_worker_records_persisted",
            "Messages newly written to MongoDB.",
            registry=self.registry,
        )
        self.duplicates = Counter(
            "dialogue_worker_records_duplicate",
            "Redelivered messages that were already stored (idempotent no-ops).",
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "dialogue_worker_dlq_records",
            "Records sent to the dead-letter topic, by reason kind.",
            ["reason"],
            registry=self.registry,
        )
        self.forwarded = Counter(
            "dialogue_worker_records_forwarded",
            "Records read from another partition than their chat's, produced to the chat's.",
            registry=self.registry,
        )
        self.rewound = Counter(
            "dialogue_worker_partitions_rewound",
            "Stuck partitions (lag, no progress) rewound to where they stand.",
            registry=self.registry,
        )
        self.offsets_skipped = Counter(
            "dialogue_worker_offsets_skipped",
            "Offsets committed past without a record: Kafka showed them empty (transaction "
            "markers).",
            registry=self.registry,
        )
        self.offsets_expired = Counter(
            "dialogue_worker_offsets_expired",
            "Offsets committed past because Kafka had deleted them (retention, DeleteRecords) "
            "before the worker stored them: the records there are lost.",
            registry=self.registry,
        )
        self.held_back = Counter(
            "dialogue_worker_batches_held_back",
            "Batches whose records of a partition came after a hole and were read again.",
            registry=self.registry,
        )
        self.commit_failures = Counter(
            "dialogue_worker_commit_failures",
            "Offset commits that Kafka refused or that failed (the next one retries).",
            registry=self.registry,
        )
        self.id_conflicts = Counter(
            "dialogue_worker_id_conflicts",
            "Records whose id was already stored with another chat, author or text.",
            registry=self.registry,
        )
        self.retries = Counter(
            "dialogue_worker_retries",
            "Failed attempts of a batch step that were retried after a pause.",
            ["step"],
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "dialogue_worker_batch_seconds",
            "Time from taking a batch to having it durably written (with retries).",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.chat_lists = Counter(
            "dialogue_worker_chat_lists",
            "Chat lists given, by where they came from: kept (only what changed was read), "
            "read (read whole, then kept), store (read whole, not kept: the events feed could "
            "not vouch for kept lists, or CHAT_LISTS_MAX is 0).",
            ["source"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "dialogue_worker_http_requests",
            "Internal API requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )

    def watch_partitions(self, lags: LagReader, stuck: StuckCounter) -> None:
        self.registry.register(_PartitionCollector(lags, stuck))

    def render(self) -> bytes:
        return generate_latest(self.registry)
