"""Pure rules of the worker: membership, record sorting, history ranges, seqs, chat lists."""

from __future__ import annotations

import asyncio
import base64
import itertools
import math
from dataclasses import replace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import ErrorCode
from contracts.records import TEXT_MAX
from contracts.requests import RequestProblem
from dialogue_worker.domain.chat_list import (
    CURSOR_MAX,
    ListCursor,
    Position,
    Ranked,
    page_of_chats,
)
from dialogue_worker.domain.chats import (
    ChatView,
    new_chat_users,
    require_member,
)
from dialogue_worker.domain.history import (
    Direction,
    HistoryRequest,
    SeqRange,
    lacking,
    message_key,
    moment_at_or_before,
    page_key,
    page_of,
    wanted,
)
from dialogue_worker.domain.records import (
    Accepted,
    InboundRecord,
    RejectKind,
    check_membership,
    decode_all,
)
from dialogue_worker.domain.sequencing import (
    ChatState,
    Known,
    first_copies,
    plan_chat,
    same_content,
    text_digest,
)
from dialogue_worker.errors import RequestError

CID = "65f0c0ffee0000000000beef"
OTHER_CID = "65f0c0ffee0000000000cafe"


def code_of(call: Any, *args: Any) -> ErrorCode:
    with pytest.raises(RequestError) as err:
        call(*args)
    return err.value.code


def test_new_chat_users_are_distinct_and_sorted() -> None:
    assert new_chat_users([3, 1, 3, 2]) == [1, 2, 3]


@pytest.mark.parametrize("users", [[1], [5, 5], []])
def test_fewer_than_two_distinct_users_is_4004(users: list[int]) -> None:
    assert code_of(new_chat_users, users) is ErrorCode.TOO_FEW_USERS


def test_membership_rules() -> None:
    chat = ChatView(CID, frozenset({1, 2}), 100, 100.0)
    assert require_member(chat, 1) is chat
    assert code_of(require_member, chat, 3) is ErrorCode.NOT_MEMBER
    assert code_of(require_member, None, 1) is ErrorCode.NOT_FOUND
    assert chat.to_api(read_seq=0).model_dump() == {
        "object": "chat",
        "id": CID,
        "users": [1, 2],
        "createdAt": 100,
        "lastSeq": 0,
        "lastMessage": None,
        "readSeq": 0,
        "unread": 0,
    }


def record(offset: int, value: object) -> InboundRecord:
    raw = value if isinstance(value, bytes) else orjson.dumps(value)
    return InboundRecord("t", 0, offset, CID.encode(), raw)


def message(uid: int, cid: str = CID, **extra: object) -> dict[str, object]:
    return {
        "v": 1,
        "id": f"{uid:024x}",
        "cid": cid,
        "uid": uid,
        "text": "hi",
        "createdAt": 1_700_000_001,
    } | extra


def test_decode_and_membership_sort_every_record() -> None:
    batch = decode_all(
        [
            record(0, message(1)),
            record(1, b"{oops"),
            record(2, message(2, text="x" * (TEXT_MAX + 1))),
            record(3, message(3)),
            record(4, message(1, cid=OTHER_CID)),
        ]
    )
    assert [r.record.offset for r in batch.rejected] == [1, 2]
    assert all(r.kind is RejectKind.INVALID for r in batch.rejected)

    members = {CID: frozenset({1, 2})}
    checked = check_membership(batch, members)
    assert [a.record.offset for a in checked.accepted] == [0]
    kinds = {r.record.offset: r.kind for r in checked.rejected}
    assert kinds == {
        1: RejectKind.INVALID,
        2: RejectKind.INVALID,
        3: RejectKind.NOT_MEMBER,
        4: RejectKind.UNKNOWN_CHAT,
    }
    reasons = {r.record.offset: r.reason for r in checked.rejected}
    assert "not a member" in reasons[3] and OTHER_CID in reasons[4]


# --- history ranges -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "last", "expected"),
    [
        (HistoryRequest(50), 0, (1, 0)),  # an empty chat
        (HistoryRequest(50), 30, (1, 30)),
        (HistoryRequest(50), 1000, (951, 1000)),
        (HistoryRequest(50, 951), 1000, (901, 950)),
        (HistoryRequest(50, 20), 1000, (1, 19)),
        (HistoryRequest(50, 5000), 1000, (951, 1000)),  # a cursor past the end
        (HistoryRequest(50, 0, Direction.NEWER), 1000, (1, 50)),
        (HistoryRequest(50, 990, Direction.NEWER), 1000, (991, 1000)),
        (HistoryRequest(50, 1000, Direction.NEWER), 1000, (1001, 1000)),
    ],
)
def test_a_read_names_the_seqs_it_wants(
    request_: HistoryRequest, last: int, expected: tuple[int, int]
) -> None:
    seqs = wanted(request_, last)
    assert (seqs.first, seqs.last) == expected


def test_a_read_touches_the_pages_of_its_seqs_and_keys_sort_like_seqs() -> None:
    for top in range(1, 2000, 37):
        assert len(wanted(HistoryRequest(200, top + 1), top).pages()) <= 9
        assert len(wanted(HistoryRequest(50, top + 1), top).pages()) <= 3
    assert wanted(HistoryRequest(50, 101), 1000).pages() == [2, 3]
    assert wanted(HistoryRequest(50, 91), 1000).pages() == [1, 2, 3]
    keys = [message_key(CID, s) for s in (9, 10, 99, 100, 101, 10**9)]
    assert keys == sorted(keys)
    assert page_key(CID, page_of(25)) != page_key(CID, page_of(26))
    assert page_key(CID, page_of(1)) == page_key(CID, page_of(25)) == f"{CID}:25:0000000000"


def test_counted_seqs_missing_from_their_pages_are_named() -> None:
    seqs = SeqRange(91, 150)
    assert 91 in seqs and 150 in seqs and 90 not in seqs and 151 not in seqs
    assert lacking(seqs, 100, [*range(95, 101), *range(101, 151)]) == [91, 92, 93, 94]
    assert lacking(seqs, 100, range(91, 101)) == []
    assert lacking(seqs, 80, []) == []  # past the count: nothing is owed
    assert lacking(SeqRange(5, 4), 100, []) == []


# --- seqs -------------------------------------------------------------------------


def accepted(offset: int, mid: int | None = None, text: str = "hi", uid: int = 1) -> Accepted:
    value = message(uid, id=f"{(offset if mid is None else mid) + 1:024x}", text=text)
    return decode_all([record(offset, value)]).accepted[0]


def test_new_records_get_the_next_seqs_and_passed_ones_are_looked_up() -> None:
    state = ChatState(last_seq=7, partition=0, last_offset=40)
    plan = plan_chat(state, [accepted(39), accepted(41), accepted(42)], {})
    assert [(p.item.record.offset, p.seq) for p in plan.new] == [(41, 8), (42, 9)]
    assert [i.record.offset for i in plan.unresolved] == [39]
    assert plan.state == ChatState(9, 0, 42)


def test_known_ids_repeat_conflict_or_are_claimed_again() -> None:
    state = ChatState(last_seq=3, partition=0, last_offset=10)
    same = accepted(11, mid=1, text="hello")
    forged = accepted(12, mid=2, text="evil")
    left_over = accepted(13, mid=3)
    passed_unstored = accepted(9, mid=4)
    known = {
        same.message.id: Known(CID, 1, 1, text_digest("hello"), applied=True),
        forged.message.id: Known(CID, 2, 1, text_digest("good"), applied=True),
        # written by this attempt alone: it may point it elsewhere
        left_over.message.id: Known(CID, 8, 1, text_digest("hi"), False, writer="me"),
        passed_unstored.message.id: Known(CID, 3, 1, text_digest("x"), applied=False),
    }
    items = [passed_unstored, same, forged, left_over]
    plan = plan_chat(state, items, known, writer="me")
    assert [(p.item.record.offset, p.seq) for p in plan.repeats] == [(11, 1)]
    assert [i.record.offset for i, _ in plan.conflicts] == [12]
    # A passed record that was never stored is stored now (faust can redeliver out of
    # order around a rebalance; dropping it would lose it).
    assert [(p.item.record.offset, p.seq) for p in plan.new] == [(9, 4), (13, 5)]
    assert plan.claims == {left_over.message.id, passed_unstored.message.id}
    assert plan.state == ChatState(5, 0, 13)


def test_an_entry_another_attempt_left_above_the_chat_holds_its_seat() -> None:
    """That attempt may be alive and store its message there: it goes there, not to the
    next seq (stored at both otherwise). The seqs below stay free for others to fill;
    the chat's state stops below them."""
    state = ChatState(last_seq=3, partition=0, last_offset=10)
    first, held, after = accepted(11, mid=1), accepted(13, mid=3), accepted(14, mid=4)
    known = {held.message.id: Known(CID, 6, 1, text_digest("hi"), applied=False)}
    plan = plan_chat(state, [first, held, after], known, writer="me")
    assert [(p.item.record.offset, p.seq) for p in plan.new] == [(11, 4), (13, 6), (14, 5)]
    assert plan.claims == {held.message.id} and plan.state == ChatState(6, 0, 14)
    alone = plan_chat(state, [held], known, writer="me")
    assert [p.seq for p in alone.new] == [6] and alone.state == state
    # Written there by this attempt, and by another one before it: held all the same.
    pinned = {held.message.id: replace(known[held.message.id], writer="me", pinned=True)}
    assert [p.seq for p in plan_chat(state, [held], pinned, writer="me").new] == [6]


def test_an_entry_at_a_seq_another_message_holds_or_below_the_chat_holds_no_seat() -> None:
    state = ChatState(last_seq=3, partition=0, last_offset=10)
    a, b = accepted(11, mid=1), accepted(12, mid=2)
    known = {
        a.message.id: Known(CID, 5, 1, text_digest("hi"), applied=False, taken=True),
        b.message.id: Known(CID, 2, 1, text_digest("hi"), applied=False),
    }
    plan = plan_chat(state, [a, b], known)
    # (seq 5 holds another message: nothing is planned there)
    assert [(p.item.record.offset, p.seq) for p in plan.new] == [(11, 4), (12, 6)]
    assert plan.claims == {a.message.id, b.message.id}


def test_two_records_holding_one_seat_the_first_keeps_it() -> None:
    state = ChatState()
    a, b = accepted(0, mid=1), accepted(1, mid=2)
    known = {
        a.message.id: Known(CID, 1, 1, text_digest("hi"), applied=False),
        b.message.id: Known(CID, 1, 1, text_digest("hi"), applied=False),
    }
    plan = plan_chat(state, [b, a], known)
    assert [(p.item.message.id, p.seq) for p in plan.new] == [(b.message.id, 1), (a.message.id, 2)]


def test_an_entry_of_another_chat_is_a_conflict_even_before_its_message_is_stored() -> None:
    state = ChatState(last_seq=3, partition=0, last_offset=10)
    item = accepted(11, mid=1, text="hello")
    theirs = Known("65f0c0ffee0000000000cafe", 1, 1, text_digest("hello"), applied=False)
    plan = plan_chat(state, [item], {item.message.id: theirs})
    assert [i for i, _ in plan.conflicts] == [item]
    assert not plan.new and not plan.claims and plan.state == state


def test_a_passed_record_the_store_never_saw_is_stored_not_dropped() -> None:
    state = ChatState(last_seq=3, partition=0, last_offset=10)
    late = accepted(7)
    assert plan_chat(state, [late], {}).unresolved == [late]
    plan = plan_chat(state, [late], {late.message.id: None})
    assert [(p.item.record.offset, p.seq) for p in plan.new] == [(7, 4)]
    assert plan.state == ChatState(4, 0, 10)  # the partition's position never moves back


def test_copies_in_one_batch_keep_the_first() -> None:
    a, b, c = accepted(0, mid=5, text="x"), accepted(1, mid=5, text="x"), accepted(2)
    firsts, copies = first_copies([a, b, c])
    assert firsts == [a, c] and copies == [(b, a)]
    assert same_content(a, b) and not same_content(a, accepted(3, mid=5, text="y"))


# --- chat lists ---------------------------------------------------------------------


def chat(n: int, at: float | None, opened: float = 1.0) -> ChatView:
    return ChatView(f"{n:024x}", frozenset({1, 2}), int(opened), opened, 1, at)


def test_chats_page_by_activity_then_id_and_the_cursor_round_trips() -> None:
    chats = [chat(1, 10.0), chat(2, 30.0), chat(3, 20.0), chat(4, 20.0), chat(5, None, 25.0)]
    ranked = [Ranked(Position(c.activity, c.id), c) for c in chats]
    first, cursor = page_of_chats(ranked, 100.0, None, 2)
    assert [c.id[-1] for c in first] == ["2", "5"] and cursor is not None
    decoded = ListCursor.decode(cursor.encode())
    assert decoded == cursor
    second, cursor = page_of_chats(ranked, decoded.snapshot, decoded.after, 2)
    assert [c.id[-1] for c in second] == ["4", "3"]
    last, cursor = page_of_chats(ranked, 100.0, cursor.after if cursor else None, 2)
    assert [c.id[-1] for c in last] == ["1"] and cursor is None


@pytest.mark.parametrize("text", ["", "x" * 201, "!!!", "bm90IGpzb24", "WzEsMl0", "WyJhIiwxLDJd"])
def test_a_cursor_not_given_out_is_4005(text: str) -> None:
    with pytest.raises(RequestProblem) as err:
        ListCursor.decode(text)
    assert err.value.code is ErrorCode.BAD_PAGING


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.from_regex(r"\A[0-9a-f]{24}\Z"),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=8,
)


def _given_out(value: object) -> bool:
    """What `encode` writes: [number, number, chat id], numbers finite and not bools."""
    if not isinstance(value, list) or len(value) != 3:
        return False
    *numbers, cid = value
    return (
        all(type(n) in (int, float) and math.isfinite(n) for n in numbers)
        and isinstance(cid, str)
        and len(cid) == 24
        and all(c in "0123456789abcdef" for c in cid)
    )


def _cursor_of(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


_NUMBER_LIKE = (
    st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.integers(-(10**6), 10**12).map(str)
    | st.sampled_from(["1_000", " 1e3 ", "inf", "nan", "-0"])
)
_ID_LIKE = st.from_regex(r"\A[0-9a-f]{24}\Z") | st.text(max_size=30) | _NUMBER_LIKE


@given(_JSON | st.tuples(_NUMBER_LIKE, _NUMBER_LIKE, _ID_LIKE).map(list))
@settings(max_examples=500)
def test_a_cursor_is_read_only_in_the_shape_encode_gives(value: object) -> None:
    """Found in review: numbers as strings ("1_000"), a bool, an object's keys, a
    string's characters and any text as the chat id were taken as a cursor."""
    text = _cursor_of(value)
    if len(text) > CURSOR_MAX or not _given_out(value):
        with pytest.raises(RequestProblem) as err:
            ListCursor.decode(text)
        assert err.value.code is ErrorCode.BAD_PAGING
        return
    assert isinstance(value, list)
    decoded = ListCursor.decode(text)
    snapshot, activity, cid = value
    assert (decoded.snapshot, decoded.after.activity, decoded.after.cid) == (
        float(snapshot),  # a cursor holds floats: what encode writes
        float(activity),
        cid,
    )


@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=300),
    st.integers(-1, 60),
    st.data(),
)
@settings(max_examples=300, deadline=None)
def test_the_moment_at_or_before_is_found_in_logarithmic_probes(
    gaps: list[int], when: int, data: st.DataObject
) -> None:
    """Moments rising with seq (ties included): the answer is the newest moment at or
    before `when` among seqs 1..top, as a scan would give, in about 2·log2 probes."""
    moments = list(itertools.accumulate(gaps))  # seq s has moments[s - 1]
    top = data.draw(st.integers(1, len(moments)))
    probes: list[int] = []

    async def moment_of(seq: int) -> float | None:
        assert 1 <= seq <= top
        probes.append(seq)
        return float(moments[seq - 1])

    found = asyncio.run(moment_at_or_before(moment_of, top, float(when)))

    early = [m for m in moments[:top] if m <= when]
    assert found == (float(max(early)) if early else None)
    assert len(probes) <= 2 * math.ceil(math.log2(top + 1)) + 2


def test_a_missing_message_counts_as_later() -> None:
    moments = {1: 1.0, 2: 2.0, 3: None, 4: 4.0}

    async def moment_of(seq: int) -> float | None:
        return moments[seq]

    assert asyncio.run(moment_at_or_before(moment_of, 4, 3.5)) == 2.0
    assert asyncio.run(moment_at_or_before(moment_of, 4, 0.5)) is None
