"""Prometheus metrics of one gateway app, in its own registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
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
