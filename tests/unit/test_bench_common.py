"""The benchmarks' shared helpers that are pure logic: the percentile, the metric reader
and the argument types."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench._common import counts, number, percentile
from infra.processes.worker import metric_sum

EXPOSITION = """\
# HELP dialogue_worker_records_persisted_total Records stored
# TYPE dialogue_worker_records_persisted_total counter
dialogue_worker_records_persisted_total{partition="0"} 3.0
dialogue_worker_records_persisted_total{partition="1",note="a b"} 4.0
dialogue_worker_records_persisted_created{partition="0"} 1.7e9
dialogue_worker_records_persisted_total_bytes 99.0
gateway_stream_sockets 2.0
gateway_stream_sockets_opened_total 50.0
"""


def test_metric_sum_adds_the_label_sets_of_exactly_one_name() -> None:
    assert metric_sum(EXPOSITION, "dialogue_worker_records_persisted_total") == 7.0
    assert metric_sum(EXPOSITION, "gateway_stream_sockets") == 2.0
    assert metric_sum(EXPOSITION, "dialogue_worker_records_persisted") == 0.0
    assert metric_sum(EXPOSITION, "absent_total") == 0.0


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1), st.floats(0, 1))
def test_percentile_is_one_of_the_values_and_monotonic_in_q(values: list[float], q: float) -> None:
    got = percentile(values, q)
    assert got in values
    assert percentile(values, 0) == min(values) and percentile(values, 1) == max(values)
    assert percentile(values, q / 2) <= got


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        percentile([], 0.5)


@pytest.mark.parametrize(
    ("parse", "raw"),
    [
        (number(int, 1), "0"),
        (number(int, 1), "-3"),
        (number(int, 1), "1.5"),
        (number(int, 0), "x"),
        (number(float, 0, above=True), "0"),
        (number(float, 0, above=True), "nan"),
        (number(float, 0, above=True), "inf"),
        (number(float, 0), "Infinity"),
        (number(float, 0), "-inf"),
        (number(float, 0), "-0.1"),
        (counts, "1,,2"),
        (counts, "1,0"),
    ],
)
def test_a_benchmark_refuses_counts_it_cannot_run_before_it_starts(parse: Any, raw: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse(raw)


@given(st.integers(min_value=1, max_value=10**9), st.floats(min_value=1e-9, max_value=1e9))
def test_counts_and_rates_in_range_are_taken_as_given(n: int, rate: float) -> None:
    assert number(int, 1)(str(n)) == n and number(float, 0, above=True)(repr(rate)) == rate
    assert counts(f"{n},{n + 1}") == [n, n + 1]
