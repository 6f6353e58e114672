"""What a load process measured over one interval: latencies per operation and answers
by code. Latencies go into log-scale histograms (2 % wide buckets), which merge across
processes and intervals and stay small however long the run is."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Smallest latency told apart (10 µs) and the width of a bucket (2 %).
FLOOR = 1e-5
GROWTH = 1.02
_LOG_GROWTH = math.log(GROWTH)
#: Answers that count as success (HTTP 2xx, a Kafka ack, a frame received).
SUCCESS = frozenset({"200", "201", "202", "ack", "frame"})


def is_server_error(code: str) -> bool:
    return len(code) == 3 and code.startswith("5")


@dataclass
class Histogram:
    """Counts of latencies by log bucket; quantiles are a bucket's upper bound (+2 %)."""

    buckets: Counter[int] = field(default_factory=Counter)
    count: int = 0
    maximum: float = 0.0

    def record(self, seconds: float) -> None:
        index = max(0, math.ceil(math.log(max(seconds, FLOOR) / FLOOR) / _LOG_GROWTH))
        self.buckets[index] += 1
        self.count += 1
        self.maximum = max(self.maximum, seconds)

    def merge(self, other: Histogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.maximum = max(self.maximum, other.maximum)

    def quantile(self, q: float) -> float | None:
        """The q-quantile in seconds (None when empty), never above the maximum seen."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(FLOOR * GROWTH**index, self.maximum)
        return self.maximum

    def to_json(self) -> dict[str, Any]:
        return {
            "b": {str(k): v for k, v in self.buckets.items()},
            "n": self.count,
            "max": self.maximum,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        buckets = Counter({int(k): int(v) for k, v in data["b"].items()})
        return cls(buckets, int(data["n"]), float(data["max"]))


@dataclass
class IntervalStats:
    """One interval of one (or, merged, several) load processes."""

    latency: dict[str, Histogram] = field(default_factory=dict)  # op -> successes
    codes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (op, code) -> n
    shed: Counter[str] = field(default_factory=Counter)  # op -> not started (cap reached)
    gauges: dict[str, float] = field(default_factory=dict)  # e.g. live sockets open

    def record(self, op: str, code: str, seconds: float | None) -> None:
        """One finished operation; its latency counts only when it succeeded."""
        self.codes[op, code] += 1
        if code in SUCCESS and seconds is not None:
            self.latency.setdefault(op, Histogram()).record(seconds)

    def merge(self, other: IntervalStats) -> None:
        for op, histogram in other.latency.items():
            self.latency.setdefault(op, Histogram()).merge(histogram)
        self.codes.update(other.codes)
        self.shed.update(other.shed)
        self.gauges.update(other.gauges)

    def errors(self) -> Counter[str]:
        """Answers that were no success, by code, over every operation."""
        found: Counter[str] = Counter()
        for (_, code), n in self.codes.items():
            if code not in SUCCESS:
                found[code] += n
        return found

    def succeeded(self, op: str) -> int:
        return sum(n for (o, code), n in self.codes.items() if o == op and code in SUCCESS)

    def to_json(self) -> dict[str, Any]:
        return {
            "latency": {op: h.to_json() for op, h in self.latency.items()},
            "codes": [[op, code, n] for (op, code), n in self.codes.items()],
            "shed": dict(self.shed),
            "gauges": self.gauges,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IntervalStats:
        return cls(
            latency={op: Histogram.from_json(h) for op, h in data["latency"].items()},
            codes=Counter({(op, code): int(n) for op, code, n in data["codes"]}),
            shed=Counter({op: int(n) for op, n in data["shed"].items()}),
            gauges={k: float(v) for k, v in data["gauges"].items()},
        )
