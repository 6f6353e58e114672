"""The benchmarks' command lines refuse what they could not run, before anything starts:
a live bench that would post nothing, a store bench whose sizes do not grow, a scaling
bench whose window could not be timed, a discovery bench with no request to time, a
worker bench against a revision git does not know, a GIN pending-list bench with nothing
to count, a list-shapes bench whose page is more than its chats."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.discovery_bench import parse_args as discovery_args
from bench.gin_pending_bench import parse_args as gin_pending_args
from bench.list_shapes_bench import parse_args as list_shapes_args
from bench.live_bench import parse_args as live_args
from bench.scaling_bench import MIN_RECORDS, MIN_WINDOW, WINDOW_SHARE
from bench.scaling_bench import parse_args as scaling_args
from bench.store_bench import LISTED, SMALL_CHATS, sizes
from bench.store_bench import members as store_members
from bench.store_bench import parse_args as store_args
from bench.worker_bench import parse_args as worker_args
from contracts.requests import MAX_USERS


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


def _refused(
    parse: Callable[[list[str]], argparse.Namespace],
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
) -> str:
    """What the command line printed when it refused argv (exit 2, as argparse does)."""
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_the_scaling_bench_minimum_is_the_fewest_records_whose_window_can_be_timed() -> None:
    # The window is WINDOW_SHARE of the records at most (none persisted while producing).
    assert WINDOW_SHARE * MIN_RECORDS >= MIN_WINDOW > WINDOW_SHARE * (MIN_RECORDS - 1)
    assert MIN_RECORDS == 1334


def test_the_scaling_bench_refuses_too_few_records_at_parse_time(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert scaling_args(["--records", str(MIN_RECORDS)]).records == MIN_RECORDS
    assert scaling_args([]).records == 60_000
    for raw in (str(MIN_RECORDS - 1), "1", "0", "many"):
        assert "error: argument --records:" in _refused(scaling_args, ["--records", raw], capsys)
    said = _refused(scaling_args, ["--records", "1000"], capsys)
    assert f"must be >= {MIN_RECORDS}, got 1000" in said


def test_the_discovery_bench_needs_two_requests_one_per_round(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert discovery_args(["--requests", "2"]).requests == 2
    said = _refused(discovery_args, ["--requests", "1"], capsys)
    assert "error: argument --requests: must be >= 2, got 1" in said


def test_the_worker_bench_takes_a_revision_git_knows(capsys: pytest.CaptureFixture[str]) -> None:
    assert worker_args(["--against", "HEAD"]).against == "HEAD"
    assert worker_args([]).against is None
    for raw in ("no-such-revision-of-this-repository", "HEAD:README.md", "-h", ""):
        said = _refused(worker_args, [f"--against={raw}"], capsys)
        assert "error: argument --against:" in said


@given(st.integers(-10, 2 * MAX_USERS))
def test_store_bench_members_fit_one_chat_creation(size: int) -> None:
    argv = ["--members", str(size)]
    if 2 <= size <= MAX_USERS:
        assert store_args(argv).members == size
    else:
        with pytest.raises(SystemExit) as exited:
            store_args(argv)
        assert exited.value.code == 2


@pytest.mark.parametrize("size", [2, 50, MAX_USERS])
def test_store_bench_chats_of_user_1_are_theirs_alone(size: int) -> None:
    chats = [store_members(i, size) for i in range(LISTED)]
    others = {2, *range(3, 3 + SMALL_CHATS)}  # the hot chat's and the small chats' users
    assert all(len(set(c)) == size and c[0] == 1 for c in chats)
    everyone = [u for c in chats for u in c[1:]]
    assert len(set(everyone)) == len(everyone) and not set(everyone) & others


@pytest.mark.parametrize(
    "argv",
    [
        ["--base", "0"],
        ["--pending", "10000,0"],
        ["--pending", ""],
        ["--lookups", "-1"],
        ["--inserts", "1.5"],
    ],
)
def test_a_gin_pending_bench_with_nothing_to_count_is_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        gin_pending_args(argv)
    assert exited.value.code == 2


def test_the_gin_pending_bench_defaults_reach_a_full_pending_list() -> None:
    """200,000 pending `_id` entries fill about the 4 MB GIN's default limit lets wait."""
    args = gin_pending_args([])
    assert args.base == 1_000_000 and max(args.pending) == 200_000


def test_a_list_shapes_bench_whose_page_is_more_than_the_chats_is_refused() -> None:
    with pytest.raises(SystemExit) as exited:
        list_shapes_args(["--chats", "10", "--page", "11"])
    assert exited.value.code == 2
    assert list_shapes_args(["--chats", "10", "--page", "10"]).page == 10
