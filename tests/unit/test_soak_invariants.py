"""The soak's end-of-run checks (bench/soak/invariants.py) and how the summary states
them (bench/soak/report.py), against hand-written fakes of Kafka and MongoDB."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from bson import ObjectId
from hypothesis import given
from hypothesis import strategies as st

from bench.soak.invariants import (
    CATCH_UP_WITHIN,
    LiveCheck,
    MessageCheck,
    Stored,
    caught_up,
    check_live,
    judge_messages,
    stored_of,
)
from bench.soak.plan import Chat, Plan
from bench.soak.report import invariant_lines, message_verdict
from dialogue_worker.domain.history import page_key, page_of

HELD = MessageCheck(
    posted=10,
    produced=2,
    stored_once=12,
    missing=[],
    duplicated=[],
    unacknowledged=0,
    seq_holes=0,
    caught_up=True,
    caught_up_seconds=1.5,
)
DELIVERED = LiveCheck(
    clients=3,
    expected=40,
    missing=0,
    clients_short=0,
    duplicates=1,
    beyond=0,
    foreign=0,
    out_of_order=0,
    uncovered=0,
    gaps=0,
    closes=Counter(),
    drain_seconds=0.5,
)


def test_a_run_that_checked_something_and_found_it_right_holds() -> None:
    assert HELD.ok and DELIVERED.ok
    assert invariant_lines(HELD, DELIVERED)[-1] == "result: invariants hold"


def test_a_run_where_nothing_was_acknowledged_is_a_violation() -> None:
    nothing = replace(HELD, posted=0, produced=0, stored_once=0)
    assert not nothing.ok
    last = invariant_lines(nothing, DELIVERED)[-1]
    assert last == "result: INVARIANTS VIOLATED: no message was acknowledged"


def test_sockets_owed_nothing_are_said_unchecked_not_violated() -> None:
    """Which chats get messages depends on the seed: with one socket and 20 messages the
    run ended VIOLATED half the time, with nothing wrong."""
    idle = replace(DELIVERED, expected=0)
    assert idle.ok and idle.unchecked
    lines = invariant_lines(HELD, idle)
    assert any("live: NOT CHECKED" in line for line in lines)
    assert lines[-1] == "result: invariants hold"
    # No socket at all (--sockets 0): said too (the summary said nothing of live delivery).
    none = replace(DELIVERED, clients=0, expected=0)
    assert none.unchecked and none.ok
    assert "  live: NOT CHECKED: no socket was open (--sockets 0)" in invariant_lines(HELD, none)


def test_seq_holes_are_a_violation() -> None:
    holed = replace(HELD, seq_holes=2)
    assert not holed.ok
    assert invariant_lines(holed, DELIVERED)[-1].endswith(": 2 seq holes")


def test_workers_that_did_not_catch_up_are_a_violation_and_the_summary_says_so() -> None:
    late = replace(HELD, caught_up=False, caught_up_seconds=CATCH_UP_WITHIN)
    lines = invariant_lines(late, DELIVERED)
    assert not late.ok
    assert "the workers did NOT catch up within 180 s" in lines[2]
    assert "caught up 180" not in "\n".join(lines)
    assert "caught up 1.5 s after the load" in invariant_lines(HELD, DELIVERED)[2]


def test_frames_out_of_order_and_uncovered_gaps_are_violations_and_are_shown() -> None:
    broken = replace(DELIVERED, out_of_order=2, uncovered=1, examples=["chat c: seq 3"])
    lines = invariant_lines(HELD, broken)
    assert "out of order 2, uncovered gaps 1;" in lines[3]
    assert "    e.g. chat c: seq 3" in lines
    assert lines[-1].endswith("2 frames out of order; 1 uncovered gaps")


@given(
    acked=st.integers(0, 3),
    missing=st.integers(0, 2),
    duplicated=st.integers(0, 2),
    holes=st.integers(0, 2),
    done=st.booleans(),
)
def test_messages_hold_exactly_when_every_part_does(
    acked: int, missing: int, duplicated: int, holes: int, done: bool
) -> None:
    check = replace(
        HELD,
        posted=acked,
        produced=0,
        missing=["m"] * missing,
        duplicated=["d"] * duplicated,
        seq_holes=holes,
        caught_up=done,
    )
    assert check.ok == (acked > 0 and not missing and not duplicated and not holes and done)
    assert len(check.problems()) == sum(
        [acked == 0, missing > 0, duplicated > 0, holes > 0, not done]
    )


def test_a_message_counts_as_stored_in_its_own_chat_and_any_id_twice_is_a_duplicate() -> None:
    """By id alone, one stored in another chat of the run counted as stored, and an id
    whose post got no clear answer could be stored twice unseen (found in review)."""
    chat_x, chat_y = str(ObjectId()), str(ObjectId())
    rest = {"acked": [("a", chat_x), ("b", chat_x)], "produced": [("c", chat_y)]}
    right = Stored(ids=Counter({(chat_x, "a"): 1, (chat_x, "b"): 1, (chat_y, "c"): 1}))
    assert judge_messages(rest, right, True, 0.0).ok
    astray = Stored(ids=Counter({(chat_x, "a"): 1, (chat_y, "b"): 1, (chat_y, "c"): 1}))
    check = judge_messages(rest, astray, True, 0.0)
    assert (check.missing, check.stored_once, check.unacknowledged) == (["b"], 2, 1)
    twice = right.ids + Counter({(chat_y, "unanswered"): 1, (chat_x, "unanswered"): 1})
    check = judge_messages(rest, Stored(ids=twice), True, 0.0)
    assert (check.duplicated, check.unacknowledged, check.ok) == (["unanswered"], 2, False)


def test_the_live_report_is_summed_over_clients() -> None:
    client = {
        "expected": 5,
        "missing": 1,
        "duplicates": 0,
        "beyond": 0,
        "foreign": 0,
        "out_of_order": 1,
        "uncovered": 2,
        "order_examples": ["a", "b"],
        "gaps": 0,
        "closes": {"1011": 1},
    }
    check = check_live({"drain_seconds": 1.0, "clients": [client, client]})
    assert (check.expected, check.missing, check.clients_short) == (10, 2, 2)
    assert (check.out_of_order, check.uncovered) == (2, 4)
    assert check.examples == ["a", "b", "a"] and check.closes == Counter({"1011": 2})


# --- waiting for the workers ----------------------------------------------------------


class FakeLag:
    def __init__(self, *readings: dict[int, int] | Exception) -> None:
        self.readings = list(readings)

    async def lags(self) -> dict[int, int]:
        reading = self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]
        if isinstance(reading, Exception):
            raise reading
        return reading


async def test_catching_up_is_reported_only_when_the_lag_reached_zero() -> None:
    assert (await caught_up(FakeLag({0: 0, 1: 0}), within=0.0))[0]  # type: ignore[arg-type]
    never = await caught_up(FakeLag({0: 0, 1: 4}), within=0.0)  # type: ignore[arg-type]
    assert never[0] is False
    later = FakeLag({0: 3}, OSError("busy"), {}, {0: 1}, {0: 0})
    assert (await caught_up(later, within=60.0, every=0.0))[0]  # type: ignore[arg-type]
    unreadable = FakeLag(OSError("down"))
    assert (await caught_up(unreadable, within=0.0))[0] is False  # type: ignore[arg-type]


# --- reading the store ----------------------------------------------------------------


class FakeCursor:
    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs

    async def to_list(self, length: int | None) -> list[dict[str, Any]]:
        return self.docs


class FakeCollection:
    """Equality filters only; counts the reads by field."""

    def __init__(self, docs: list[dict[str, Any]]) -> None:
        self.docs = docs
        self.filtered_by: Counter[str] = Counter()

    def _match(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        self.filtered_by.update(query.keys())
        return [d for d in self.docs if all(d.get(k) == v for k, v in query.items())]

    async def find_one(self, query: dict[str, Any], projection: Any = None) -> Any:
        found = self._match(query)
        return found[0] if found else None

    def find(self, query: dict[str, Any], projection: Any = None) -> FakeCursor:
        return FakeCursor(self._match(query))


def _history(cid: str, seqs: list[int]) -> list[dict[str, Any]]:
    return [
        {
            "_id": f"{cid}:{s}",
            "page": page_key(cid, page_of(s)),
            "cid": ObjectId(cid),
            "seq": s,
            "id": f"{cid}-{s}",
        }
        for s in seqs
    ]


def _plan(cids: list[str]) -> Plan:
    return Plan(
        run="r",
        api_url="",
        kafka_bootstrap="",
        topic="",
        rates={},
        sockets=0,
        pages=1,
        in_flight=1,
        hot_share=0.0,
        seed=1,
        chats=[Chat(cid, [0, 1], False) for cid in cids],
    )


async def test_the_store_is_read_by_page_and_every_hole_shows() -> None:
    whole, holed, page_gone, past_last, empty = (str(ObjectId()) for _ in range(5))
    seqs = {
        whole: list(range(1, 31)),  # two pages
        holed: [1, 2, 4, 5],
        page_gone: list(range(26, 31)),  # the first page is missing whole
        past_last: list(range(1, 28)),  # stored past what the chat's document says
        empty: [],
    }
    last = {whole: 30, holed: 5, page_gone: 30, past_last: 25, empty: 0}
    history = FakeCollection([d for cid, s in seqs.items() for d in _history(cid, s)])
    chats = FakeCollection([{"_id": ObjectId(cid), "lastSeq": n} for cid, n in last.items()])
    db = {"history": history, "chats": chats}

    stored = await stored_of(db, _plan(list(seqs)))  # type: ignore[arg-type]

    assert stored.last_seq == {whole: 30, holed: 5, page_gone: 30, past_last: 27, empty: 0}
    assert stored.seq_holes == 1 + 25
    assert sum(stored.ids.values()) == sum(len(s) for s in seqs.values())
    assert set(history.filtered_by) == {"page"}  # never by cid: that is a scan


def test_an_id_acknowledged_twice_or_a_stored_refusal_breaks_the_invariant() -> None:
    """A set of acknowledged ids let two 202s with one id pass while one message was never
    stored; and any stored message without an acknowledgement passed as "no clear answer",
    a refused post stored too (found in review)."""
    chat = str(ObjectId())
    stored = Stored(ids=Counter({(chat, "a"): 1}))
    twice = judge_messages({"acked": [("a", chat), ("a", chat)], "produced": []}, stored, True, 0)
    assert twice.reacknowledged == ["a"] and not twice.ok
    extra = Stored(ids=stored.ids + Counter({(chat, "x"): 1}))
    rest: dict[str, object] = {"acked": [("a", chat)], "produced": []}
    assert not judge_messages(rest, extra, True, 0).ok  # no post went unanswered
    rest["unclear"] = {"timeout": 1}
    assert judge_messages(rest, extra, True, 0).ok  # the one that timed out was stored


def test_the_messages_verdict_stands_on_its_own() -> None:
    """Written before the live check: a run that failed after it lost a broken messages
    invariant with its summary (found in review)."""
    assert message_verdict(HELD).splitlines()[0] == "messages invariant holds"
    broken = replace(HELD, missing=["m1", "m2"], reacknowledged=["m3"])
    verdict = message_verdict(broken).splitlines()
    assert verdict[0].startswith("messages invariant VIOLATED: 2 acknowledged messages missing")
    assert "missing: m1 m2" in verdict and "acknowledged twice: m3" in verdict
