"""Round robin, ejection, cool-down and readmission, on a fake clock."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discovery.balancer import Balancer
from discovery.models import Instance


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def inst(name: str, port: int = 8000) -> Instance:
    return Instance(id=name, address="127.0.0.1", port=port)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def balancer(clock: FakeClock) -> Balancer:
    b = Balancer(cooldown=5.0, max_cooldown=40.0, clock=clock)
    b.update([inst("c", 3), inst("a", 1), inst("b", 2)])
    return b


def picks(balancer: Balancer, n: int) -> list[str]:
    out = []
    for _ in range(n):
        chosen = balancer.pick()
        assert chosen is not None
        out.append(chosen.id)
    return out


def test_round_robin_visits_every_instance_in_turn(balancer: Balancer) -> None:
    assert picks(balancer, 7) == ["a", "b", "c", "a", "b", "c", "a"]
    assert [s.requests for s in balancer.stats()] == [3, 2, 2]


def test_empty_set_gives_nothing() -> None:
    assert Balancer().pick() is None


def test_exclude_skips_instances_already_tried(balancer: Balancer) -> None:
    chosen = balancer.pick(exclude={"a", "b"})
    assert chosen is not None and chosen.id == "c"
    assert balancer.pick(exclude={"a", "b", "c"}) is None


def test_failure_ejects_for_the_cooldown_then_probe_readmits(
    balancer: Balancer, clock: FakeClock
) -> None:
    assert balancer.failed("b") is True
    assert picks(balancer, 4) == ["a", "c", "a", "c"]
    stats = {s.id: s for s in balancer.stats()}
    assert stats["b"].healthy is False and stats["b"].ejected_until == clock.now + 5.0
    assert stats["b"].failures == 1 and stats["b"].ejections == 1

    clock.advance(4.9)
    assert balancer.due_for_probe() == []
    clock.advance(0.2)
    assert [i.id for i in balancer.due_for_probe()] == ["b"]
    assert balancer.due_for_probe() == []  # handed out once per cool-down
    assert "b" not in picks(balancer, 4)  # still out until the probe passes
    balancer.probe_passed("b")
    assert Counter(picks(balancer, 6)) == {"a": 2, "b": 2, "c": 2}


def test_failed_probe_doubles_the_cooldown_up_to_the_ceiling(
    balancer: Balancer, clock: FakeClock
) -> None:
    balancer.failed("a")
    lengths = []
    for _ in range(5):
        until = next(s.ejected_until for s in balancer.stats() if s.id == "a")
        assert until is not None
        lengths.append(until - clock.now)
        clock.now = until
        assert [i.id for i in balancer.due_for_probe()] == ["a"]
        balancer.probe_failed("a")
    assert lengths == [5.0, 10.0, 20.0, 40.0, 40.0]
    assert next(s.ejections for s in balancer.stats() if s.id == "a") == 6


def test_success_resets_the_doubling(balancer: Balancer, clock: FakeClock) -> None:
    balancer.failed("a")
    clock.advance(5)
    balancer.due_for_probe()
    balancer.probe_failed("a")  # second ejection: 10 s
    balancer.succeeded("a")  # a request got through (e.g. while all were ejected)
    assert next(s.healthy for s in balancer.stats() if s.id == "a")
    balancer.failed("a")
    until = next(s.ejected_until for s in balancer.stats() if s.id == "a")
    assert until == clock.now + 5.0


def test_concurrent_failures_eject_once(balancer: Balancer) -> None:
    assert balancer.failed("a") is True
    assert balancer.failed("a") is False
    stats = {s.id: s for s in balancer.stats()}
    assert stats["a"].failures == 2 and stats["a"].ejections == 1


def test_all_ejected_hands_out_the_one_whose_cooldown_ends_first(
    balancer: Balancer, clock: FakeClock
) -> None:
    balancer.failed("b")
    clock.advance(1)
    balancer.failed("a")
    clock.advance(1)
    balancer.failed("c")
    chosen = balancer.pick()
    assert chosen is not None and chosen.id == "b"
    chosen = balancer.pick(exclude={"b"})
    assert chosen is not None and chosen.id == "a"
    assert balancer.pick(exclude={"a", "b", "c"}) is None


def test_late_probe_result_after_a_new_ejection_is_ignored(
    balancer: Balancer, clock: FakeClock
) -> None:
    balancer.failed("a")
    clock.advance(5)
    balancer.due_for_probe()
    balancer.failed("a")  # a request (all-ejected fallback) failed while probing
    balancer.probe_passed("a")  # the stale probe must not readmit it
    assert not next(s.healthy for s in balancer.stats() if s.id == "a")


def test_update_keeps_counters_of_instances_that_stay(balancer: Balancer) -> None:
    picks(balancer, 3)
    balancer.failed("a")
    balancer.update([inst("a", 1), inst("b", 99), inst("d", 4)])
    stats = {s.id: s for s in balancer.stats()}
    assert set(stats) == {"a", "b", "d"}
    assert stats["a"].requests == 1 and stats["a"].ejections == 1 and not stats["a"].healthy
    assert stats["b"].requests == 0  # same id, new address: a new instance
    assert stats["b"].url == "http://127.0.0.1:99"


def test_update_while_cursor_is_past_the_end(balancer: Balancer) -> None:
    picks(balancer, 2)
    balancer.update([inst("a", 1)])
    assert picks(balancer, 2) == ["a", "a"]


def test_bad_cooldowns_are_refused() -> None:
    with pytest.raises(ValueError):
        Balancer(cooldown=0)
    with pytest.raises(ValueError):
        Balancer(cooldown=10, max_cooldown=5)


def test_an_answer_to_a_request_sent_before_the_ejection_leaves_it_ejected(
    balancer: Balancer, clock: FakeClock
) -> None:
    """It used to end the cool-down at once and reset the doubling: a worker failing
    every other request stayed in rotation."""
    sent_before = balancer.ejections_of("a")
    assert balancer.failed("a")  # another request to it failed meanwhile
    balancer.succeeded("a", sent_before)  # the earlier one answers late
    assert "a" not in picks(balancer, 4)
    clock.advance(5)
    assert [i.id for i in balancer.due_for_probe()] == ["a"]
    balancer.probe_failed("a")  # its second ejection in a row: the doubling held
    assert {s.id: s for s in balancer.stats()}["a"].ejected_until == clock.now + 10
    balancer.succeeded("a", balancer.ejections_of("a"))  # sent since: readmits it
    assert "a" in picks(balancer, 3)


def test_outcomes_from_an_address_the_id_no_longer_has_are_ignored(clock: FakeClock) -> None:
    """An id registered again at another URL gets a new slot; a late timeout of a request
    to the old URL ejected the new one, and a late answer readmitted it (found in review)."""
    b = Balancer(cooldown=5.0, max_cooldown=40.0, clock=clock)
    b.update([inst("a", 1), inst("b", 2)])
    old = b.pick()
    assert old is not None and old.id == "a"
    b.update([inst("a", 9), inst("b", 2)])  # "a" moved while the request was in flight
    assert not b.failed("a", at=old.base_url)
    assert {s.id: s.healthy for s in b.stats()} == {"a": True, "b": True}
    assert b.failed("a", at=inst("a", 9).base_url)  # its own failure still counts
    clock.advance(5.0)
    assert [i.id for i in b.due_for_probe()] == ["a"]
    b.probe_passed("a", at=old.base_url)  # a probe of the old URL says nothing either
    b.succeeded("a", at=old.base_url)
    assert {s.id: s.healthy for s in b.stats()} == {"a": False, "b": True}
    b.probe_passed("a", at=inst("a", 9).base_url)
    assert {s.id: s.healthy for s in b.stats()} == {"a": True, "b": True}


def _healthy(balancer: Balancer, instance_id: str) -> bool:
    return next(s.healthy for s in balancer.stats() if s.id == instance_id)


def test_a_fault_ejects_only_at_the_count_in_a_row(balancer: Balancer) -> None:
    """A request that makes the handler fail says little of the instance: the first
    faults count as failures and eject nothing; the `in_a_row`-th ejects it."""
    for _ in range(4):
        assert not balancer.faulted("a", in_a_row=5)
        assert _healthy(balancer, "a")
    assert balancer.faulted("a", in_a_row=5)
    stats = {s.id: s for s in balancer.stats()}
    assert not stats["a"].healthy and stats["a"].failures == 5 and stats["a"].ejections == 1


def test_a_served_request_between_faults_starts_the_count_again(balancer: Balancer) -> None:
    for _ in range(3):
        for _ in range(4):
            assert not balancer.faulted("a", in_a_row=5)
        balancer.succeeded("a")
    assert _healthy(balancer, "a") and balancer.ejections_of("a") == 0


def test_a_health_check_alone_keeps_the_count(balancer: Balancer) -> None:
    """A passing health check says the instance is up, not that its handlers serve."""
    for _ in range(4):
        balancer.faulted("a", in_a_row=5)
    balancer.succeeded("a", served=False)
    assert balancer.faulted("a", in_a_row=5) and not _healthy(balancer, "a")


@given(
    outcomes=st.lists(st.sampled_from(["served", "checked", "fault", "failure"]), max_size=60),
    in_a_row=st.integers(1, 6),
)
def test_an_instance_is_ejected_by_a_failure_or_by_faults_in_a_row(
    outcomes: list[str], in_a_row: int
) -> None:
    """Whatever the order of outcomes (the clock stands still, so an ejection lasts): a
    failure ejects an instance in rotation; a fault ejects it when it is the
    `in_a_row`-th since the last served request or ejection; an answer readmits it."""
    balancer = Balancer(cooldown=5.0, max_cooldown=40.0, clock=FakeClock())
    balancer.update([inst("a")])
    run, ejections = 0, 0
    for outcome in outcomes:
        in_rotation = _healthy(balancer, "a")
        if outcome in ("served", "checked"):
            balancer.succeeded("a", served=outcome == "served")
            run = 0 if outcome == "served" else run
            assert _healthy(balancer, "a")
            continue
        if outcome == "fault":
            run += 1
            ejected = balancer.faulted("a", in_a_row=in_a_row)
            assert ejected == (in_rotation and run >= in_a_row)
        else:
            ejected = balancer.failed("a")
            assert ejected == in_rotation
        if ejected:
            run, ejections = 0, ejections + 1
        assert _healthy(balancer, "a") == (in_rotation and not ejected)
    assert balancer.ejections_of("a") == ejections
