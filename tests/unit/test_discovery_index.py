"""Consul's blocking-query index rules, the loop's pacing and the backoff."""

from __future__ import annotations

import pytest

from discovery.index import Pacer, next_index
from platform_common.retry import Backoff


@pytest.mark.parametrize(
    ("previous", "returned", "expected"),
    [
        (0, 42, 42),  # first query
        (42, 42, 42),  # wait elapsed, nothing changed
        (42, 57, 57),  # a change
        (42, 7, 0),  # went backwards (agent restart, snapshot restore): reset, do not block
        (0, 0, 1),  # a buggy 0 never makes the loop spin: keep it >= 1
        (1, 0, 0),
    ],
)
def test_next_index(previous: int, returned: int, expected: int) -> None:
    assert next_index(previous, returned) == expected


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_pacer_spaces_query_starts() -> None:
    clock = FakeClock()
    pacer = Pacer(0.05, clock)
    assert pacer.delay() == 0.0
    pacer.started()
    assert pacer.delay() == pytest.approx(0.05)
    clock.now += 0.03
    assert pacer.delay() == pytest.approx(0.02)
    clock.now += 1.0  # a long blocking query: the next one may start at once
    assert pacer.delay() == 0.0


def test_backoff_doubles_to_the_maximum_and_resets() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, jitter=0.5, rand=lambda: 0.0)
    assert [backoff.next_delay() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert backoff.failures == 6
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.1)


def test_backoff_jitter_shortens_at_most_by_its_share() -> None:
    backoff = Backoff(initial=1.0, maximum=1.0, jitter=0.5, rand=lambda: 1.0)
    assert backoff.next_delay() == pytest.approx(0.5)


def test_backoff_survives_a_very_long_outage() -> None:
    backoff = Backoff(initial=0.1, maximum=5.0, rand=lambda: 0.0)
    for _ in range(5000):
        delay = backoff.next_delay()
    assert delay == 5.0


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(initial=2.0, maximum=1.0)
    with pytest.raises(ValueError):
        Backoff(jitter=1.5)
