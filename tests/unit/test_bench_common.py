"""The benchmarks' shared helpers that are pure logic: the percentile, the metric reader
and the argument types."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench._common import counts, loopback_consul, number, percentile
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
    # one label set, named as the exposition writes it
    labelled = 'dialogue_worker_records_persisted_total{partition="0"}'
    assert metric_sum(EXPOSITION, labelled) == 3.0
    assert metric_sum(EXPOSITION, 'dialogue_worker_records_persisted_total{partition="2"}') == 0


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1), st.floats(0, 1))
def test_percentile_is_one_of_the_values_and_monotonic_in_q(values: list[float], q: float) -> None:
    got = percentile(values, q)
    assert got in values
    assert percentile(values, 0) == min(values) and percentile(values, 1) == max(values)
    assert percentile(values, q / 2) <= got


@given(st.integers(1, 3000), st.sampled_from([0.5, 0.9, 0.99, 0.999]))
def test_percentile_is_the_nearest_rank(n: int, q: float) -> None:
    """The ceil(q * n)-th smallest: at least a q share of the values are at or below it,
    and fewer below the one before. The old rule (round half to even of q * (n - 1))
    took the upper middle of 4 values and the lower of 6 (found in review)."""
    values = [float(i) for i in range(1, n + 1)]  # the k-th smallest is k
    got = int(percentile(values, q))
    assert got >= q * n - 1e-9 and got - 1 < q * n - 1e-9
    assert percentile(values[::-1], q) == got  # the order given does not matter


@pytest.mark.parametrize(
    ("n", "q", "rank"), [(4, 0.5, 2), (6, 0.5, 3), (8, 0.5, 4), (200, 0.99, 198), (52, 0.99, 52)]
)
def test_percentile_known_ranks(n: int, q: float, rank: int) -> None:
    assert percentile([float(i) for i in range(1, n + 1)], q) == rank


def test_a_benchmark_talks_to_a_consul_on_this_machine_only() -> None:
    assert loopback_consul("http://127.0.0.1:8500") == "http://127.0.0.1:8500"
    for far in ("http://203.0.113.5:8500", "consul.example:8500", "http://admin:pw@127.0.0.1:1"):
        with pytest.raises(argparse.ArgumentTypeError) as refused:
            loopback_consul(far)
        assert "pw" not in str(refused.value)


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
