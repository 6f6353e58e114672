"""The benchmarks' command lines refuse what they could not run, before anything starts:
a live bench that would post nothing, a store bench whose sizes do not grow."""

from __future__ import annotations

import argparse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.live_bench import parse_args as live_args
from bench.store_bench import parse_args as store_args
from bench.store_bench import sizes


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate", "0.01", "--seconds", "10"],  # 0.1 posts: rounds to none
        ["--rate", "1", "--seconds", "0.4"],
        ["--rate", "1e300", "--seconds", "1e300"],  # finite each, not their product
        ["--rate", "inf"],
        ["--seconds", "nan"],
    ],
)
def test_a_live_bench_that_would_post_nothing_is_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        live_args(argv)
    assert exited.value.code == 2


@given(st.floats(0.001, 1000), st.floats(0.001, 1000))
def test_a_live_bench_runs_when_it_posts_at_least_once(rate: float, seconds: float) -> None:
    argv = ["--rate", repr(rate), "--seconds", repr(seconds)]
    if round(rate * seconds) >= 1:
        args = live_args(argv)
        assert (args.rate, args.seconds) == (rate, seconds)
    else:
        with pytest.raises(SystemExit):
            live_args(argv)


def test_the_live_bench_defaults_run() -> None:
    args = live_args([])
    assert args.rate * args.seconds == 1500


@given(st.lists(st.integers(1, 10**7), min_size=1, max_size=6))
def test_store_sizes_must_grow(found: list[int]) -> None:
    raw = ",".join(map(str, found))
    if found == sorted(set(found)):
        assert sizes(raw) == found
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="larger than the one before"):
            sizes(raw)


def test_the_store_bench_refuses_sizes_that_do_not_grow_at_parse_time() -> None:
    assert store_args([]).sizes == [10_000, 100_000, 1_000_000]
    for raw in ("100,100", "1000,10"):
        with pytest.raises(SystemExit):
            store_args(["--sizes", raw])
