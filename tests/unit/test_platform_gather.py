"""platform_common.gather.bounded: order, the limit, and no new call after a failure."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from platform_common.gather import bounded
from tests.support.waiting import eventually


class Boom(Exception):
    pass


@given(st.lists(st.integers()), st.integers(min_value=1, max_value=5))
async def test_results_come_in_item_order_and_at_most_limit_run_at_once(
    items: list[int], limit: int
) -> None:
    running = 0
    most = 0

    async def call(item: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0)  # let the others start, if the gate allows them
        running -= 1
        return item * 2

    assert await bounded(items, call, limit) == [i * 2 for i in items]
    assert most <= limit
    assert most == min(limit, len(items)) or not items


async def test_after_a_failure_none_starts_and_those_running_end_on_their_own() -> None:
    started: list[int] = []
    release = asyncio.Event()
    finished: list[int] = []

    async def call(item: int) -> int:
        started.append(item)
        if item == 2:
            raise Boom
        await release.wait()
        finished.append(item)
        return item

    task = asyncio.ensure_future(bounded(range(10), call, 3))
    with pytest.raises(Boom):
        await task
    assert started == [0, 1, 2]  # 3..9 never started, 0 and 1 still run
    release.set()
    await eventually(lambda: finished == [0, 1], what="the running calls end")
    assert started == [0, 1, 2]


async def test_a_limit_below_one_is_refused() -> None:
    async def call(item: int) -> int:
        return item

    with pytest.raises(ValueError, match="at least 1"):
        await bounded([1], call, 0)
