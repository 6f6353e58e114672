"""Prometheus metrics of one gateway app, in its own registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.services.ports import InstanceView


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gateway_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.errors = Counter(
            "gateway_errors",
            "Error answers, by error code",
            ["code"],
            registry=self.registry,
        )

        self.stream_frames = Counter(
            "gateway_stream_frames",
            "Frames sent to stream clients, by type (catch-up messages included)",
            ["type"],
            registry=self.registry,
        )
        self.stream_closes = Counter(
            "gateway_stream_closes",
            "Streams ended, by close code (the client's own close is 1000/1001)",
            ["code"],
            registry=self.registry,
        )
        self.stream_overflows = Counter(
            "gateway_stream_queue_overflows",
            "Streams closed as too slow: their send queue was full",
            registry=self.registry,
        )
        self.stream_push = Histogram(
            "gateway_stream_push_seconds",
            "From an event's publication (its Kafka timestamp) to its frame being sent",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.stream_caught_up = Counter(
            "gateway_stream_catch_up_messages",
            "Messages sent from history (catch-up after hello, or a seq the feed skipped)",
            registry=self.registry,
        )
        self.stream_gaps = Counter(
            "gateway_stream_gaps", "Gap frames sent instead of a catch-up", registry=self.registry
        )
        self.events_skipped = Counter(
            "gateway_events_skipped",
            "Records on the events topic that were not events",
            ["reason"],
            registry=self.registry,
        )
        self.stream_sockets = Gauge(
            "gateway_stream_sockets", "Open stream sessions", registry=self.registry
        )

    def delivered(self, kind: str, latency: float | None) -> None:
        self.stream_frames.labels(kind).inc()
        if latency is not None:
            self.stream_push.observe(latency)

    def overflowed(self) -> None:
        self.stream_overflows.inc()

    def caught_up(self, messages: int, gaps: int) -> None:
        if messages:
            self.stream_caught_up.inc(messages)
            self.stream_frames.labels("message").inc(messages)
        if gaps:
            self.stream_gaps.inc(gaps)
            self.stream_frames.labels("gap").inc(gaps)

    def skipped_event(self, reason: str) -> None:
        self.events_skipped.labels(reason).inc()

    def watch_sockets(self, count: Callable[[], int]) -> None:
        self.stream_sockets.set_function(count)

    def watch_idempotency(self, keys: Callable[[], int], evicted_early: Callable[[], int]) -> None:
        """Export how many Idempotency-Keys are held and how many went before their time."""
        self.registry.register(_IdempotencyCollector(keys, evicted_early))

    def watch_instances(self, instances: Callable[[], list[InstanceView]]) -> None:
        """Export the balancer's per-instance counters on every scrape."""
        self.registry.register(_InstanceCollector(instances))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _InstanceCollector(Collector):
    def __init__(self, instances: Callable[[], list[InstanceView]]) -> None:
        self._instances = instances

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        requests = CounterMetricFamily(
            "gateway_upstream_requests",
            "Requests sent to each worker instance",
            labels=["instance"],
        )
        failures = CounterMetricFamily(
            "gateway_upstream_failures", "Failed requests per worker instance", labels=["instance"]
        )
        healthy = GaugeMetricFamily(
            "gateway_upstream_healthy", "1 if the instance is not ejected", labels=["instance"]
        )
        for view in self._instances():
            requests.add_metric([view.id], view.requests)
            failures.add_metric([view.id], view.failures)
            healthy.add_metric([view.id], 1.0 if view.healthy else 0.0)
        yield requests
        yield failures
        yield healthy


class _IdempotencyCollector(Collector):
    def __init__(self, keys: Callable[[], int], evicted_early: Callable[[], int]) -> None:
        self._keys = keys
        self._evicted_early = evicted_early

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "gateway_idempotency_keys",
            "Idempotency-Keys this process remembers",
            value=self._keys(),
        )
        yield CounterMetricFamily(
            "gateway_idempotency_evicted_early",
            "Idempotency-Keys forgotten before IDEMPOTENCY_TTL because a bound was full",
            value=self._evicted_early(),
        )
