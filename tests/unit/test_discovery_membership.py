"""What the watch serves while Consul is away or has just come back, on a fake clock."""

from __future__ import annotations

from discovery.membership import Membership
from discovery.models import Instance

A = Instance("a", "127.0.0.1", 1)
B = Instance("b", "127.0.0.1", 2)


class FakeClock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def make() -> tuple[Membership, FakeClock]:
    clock = FakeClock()
    return Membership(restart_grace=15.0, clock=clock), clock


def test_answers_replace_the_set_and_report_changes() -> None:
    m, _ = make()
    assert not m.ready
    assert m.observed(()) is False and m.ready
    assert m.observed((A, B)) is True
    assert m.observed((A, B)) is False
    assert m.observed((A,)) is True and m.instances == (A,)
    assert m.observed(()) is True and m.instances == ()


def test_unreachable_keeps_the_set_and_marks_it_stale_from_the_first_failure() -> None:
    m, clock = make()
    m.observed((A, B))
    m.unreachable()
    clock.now += 3
    m.unreachable()
    assert m.instances == (A, B)
    assert m.stale_since == 10.0
    assert m.observed((A, B)) is False
    assert m.stale_since is None


def test_empty_answer_right_after_an_outage_is_doubted_for_the_grace() -> None:
    m, clock = make()
    m.observed((A, B))
    m.unreachable()
    clock.now += 60  # a long outage; the grace starts when Consul is back
    assert m.observed(()) is False
    assert m.instances == (A, B) and m.stale_since == 10.0
    assert m.doubt_left() == 15.0
    clock.now += 5
    assert m.observed((A,)) is False  # A is back; B may not have re-registered yet
    assert m.instances == (A, B) and m.stale_since == 10.0 and m.doubt_left() == 10.0
    assert m.observed((A, B)) is False  # every instance of before is back: trusted again
    assert m.instances == (A, B) and m.stale_since is None and m.doubt_left() is None


C = Instance("c", "127.0.0.1", 3)


def test_after_an_agent_restart_instances_come_back_one_by_one_without_the_others_leaving() -> None:
    """A restarted agent lists the workers as their heartbeats register them again:
    believing its first answer sent every read to the first worker back."""
    m, clock = make()
    m.observed((A, B, C))
    m.restarted()  # index went backwards
    assert m.observed((B,)) is False and m.instances == (A, B, C)
    assert m.stale_since == 10.0  # not every served instance is confirmed
    moved_a = Instance("a", "127.0.0.1", 9)  # came back on another port: its new address
    assert m.observed((moved_a, B)) is True and m.instances == (moved_a, B, C)
    new = Instance("d", "127.0.0.1", 4)  # a new one is served at once
    assert m.observed((moved_a, B, new)) is True and m.instances == (moved_a, B, C, new)
    clock.now += 15.1  # C never came back: after the grace it is gone
    assert m.observed((moved_a, B, new)) is True and m.instances == (moved_a, B, new)
    assert m.stale_since is None and m.doubt_left() is None
    assert m.observed((B,)) is True and m.instances == (B,)  # trusted again: losses believed


def test_empty_answer_is_believed_after_the_grace() -> None:
    m, clock = make()
    m.observed((A,))
    m.restarted()  # index went backwards
    assert m.observed(()) is False
    clock.now += 15.1
    assert m.doubt_left() is None
    assert m.observed(()) is True and m.instances == () and m.stale_since is None


def test_without_an_outage_an_empty_answer_is_believed() -> None:
    m, _ = make()
    m.observed((A,))
    assert m.observed(()) is True


def test_failures_within_the_grace_do_not_extend_it() -> None:
    """B crashed while Consul was away: Consul failing now and then afterwards must not
    keep it served beyond the one grace (it was kept for as long as failures came)."""
    m, clock = make()
    m.observed((A, B))
    m.unreachable()
    clock.now += 5
    assert m.observed((A,)) is False and m.instances == (A, B)  # grace until 30
    for _ in range(3):  # a failed query and an index reset, each inside the grace
        clock.now += 4
        m.unreachable()
        m.restarted()
        assert m.observed((A,)) is False and m.instances == (A, B)
    clock.now += 3.1  # 15.1 s after the first answer
    m.unreachable()  # fails once more after the grace, before the next answer
    assert m.observed((A,)) is True and m.instances == (A,)
    assert m.stale_since is None and m.doubt_left() is None


def test_a_restart_after_a_believed_answer_gets_a_grace_of_its_own() -> None:
    m, clock = make()
    m.observed((A, B))
    m.restarted()
    assert m.observed((A,)) is False  # doubted until 25
    clock.now += 15.1
    assert m.observed((A,)) is True and m.instances == (A,)  # B left: believed after the grace
    m.observed((A, B))  # B back
    m.restarted()  # a later restart is doubted again
    assert m.observed((A,)) is False and m.instances == (A, B)
