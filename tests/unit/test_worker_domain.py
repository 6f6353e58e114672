"""Pure rules of the worker: request values, membership, paging, record sorting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.errors import ErrorCode
from contracts.records import TEXT_MAX
from dialogue_worker.domain.chats import (
    ChatView,
    new_chat_users,
    parse_cid,
    parse_uid,
    parse_users,
    require_member,
)
from dialogue_worker.domain.paging import (
    DEFAULT_LIMIT,
    Direction,
    PageRequest,
    chats_page_request,
    cut_page,
    messages_page_request,
)
from dialogue_worker.domain.records import (
    InboundRecord,
    RejectKind,
    check_membership,
    decode_all,
    needs_fresh_check,
)
from dialogue_worker.errors import RequestError

CID = "65f0c0ffee0000000000beef"
OTHER_CID = "65f0c0ffee0000000000cafe"


def code_of(call: Any, *args: Any) -> ErrorCode:
    with pytest.raises(RequestError) as err:
        call(*args)
    return err.value.code


@pytest.mark.parametrize("raw", [None, "", "0", "-3", "abc", "1.5", "٣"])
def test_bad_uid_is_4002(raw: str | None) -> None:
    assert code_of(parse_uid, raw) is ErrorCode.BAD_USER_ID


def test_uid_and_cid_parse() -> None:
    assert parse_uid("42") == 42
    assert parse_cid(CID) == CID


@pytest.mark.parametrize("raw", [None, "", "xyz", CID.upper(), CID + "0"])
def test_bad_cid_is_4001(raw: str | None) -> None:
    assert code_of(parse_cid, raw) is ErrorCode.BAD_CHAT_ID


def test_new_chat_users_are_distinct_and_sorted() -> None:
    assert new_chat_users({"users": [3, 1, 3, 2]}) == [1, 2, 3]


@pytest.mark.parametrize("body", [{"users": [1]}, {"users": [5, 5]}, {"users": []}])
def test_fewer_than_two_distinct_users_is_4004(body: object) -> None:
    assert code_of(new_chat_users, body) is ErrorCode.TOO_FEW_USERS


@pytest.mark.parametrize("body", [None, [], {"users": 3}, {"members": [1, 2]}, "x"])
def test_malformed_users_body_is_4000(body: object) -> None:
    assert code_of(parse_users, body) is ErrorCode.MALFORMED


@pytest.mark.parametrize("uid", [0, -1, "2", 1.0, True, None])
def test_bad_user_in_body_is_4002(uid: object) -> None:
    assert code_of(parse_users, {"users": [1, uid]}) is ErrorCode.BAD_USER_ID


def test_membership_rules() -> None:
    chat = ChatView(CID, frozenset({1, 2}), 100)
    assert require_member(chat, 1) is chat
    assert code_of(require_member, chat, 3) is ErrorCode.NOT_MEMBER
    assert code_of(require_member, None, 1) is ErrorCode.NOT_FOUND
    assert chat.to_api().model_dump() == {
        "object": "chat",
        "id": CID,
        "users": [1, 2],
        "createdAt": 100,
    }


@dataclass(frozen=True)
class Row:
    id: str


def ids(n: int) -> list[str]:
    return [f"{i:024x}" for i in range(n)]


def test_paging_parameters() -> None:
    assert messages_page_request({}) == PageRequest(DEFAULT_LIMIT)
    after = messages_page_request({"after": CID, "limit": "200"})
    assert after == PageRequest(200, CID, Direction.NEWER)
    assert chats_page_request({"cursor": CID, "limit": "1"}) == PageRequest(1, CID)


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "ten"},
        {"before": "nope"},
        {"after": "123"},
        {"before": CID, "after": OTHER_CID},
    ],
)
def test_bad_paging_is_4005(query: dict[str, str]) -> None:
    assert code_of(messages_page_request, query) is ErrorCode.BAD_PAGING


def test_cut_page_older_direction_pages_by_last_id() -> None:
    newest_first = [Row(i) for i in reversed(ids(5))]
    page, cursor = cut_page(newest_first[:3], PageRequest(2))
    assert [r.id for r in page] == [newest_first[0].id, newest_first[1].id]
    assert cursor == newest_first[1].id
    last, cursor = cut_page(newest_first[3:], PageRequest(2))
    assert len(last) == 2 and cursor is None


def test_cut_page_newer_direction_returns_newest_first_and_newest_cursor() -> None:
    ascending = [Row(i) for i in ids(4)]
    page, cursor = cut_page(ascending[:3], PageRequest(2, "x", Direction.NEWER))
    assert [r.id for r in page] == [ascending[1].id, ascending[0].id]
    assert cursor == ascending[1].id
    page, cursor = cut_page(ascending[2:], PageRequest(2, "x", Direction.NEWER))
    assert [r.id for r in page] == [ascending[3].id, ascending[2].id] and cursor is None


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
    assert batch.chat_ids == {CID, OTHER_CID}

    members = {CID: frozenset({1, 2})}
    assert needs_fresh_check(batch, members) == {CID, OTHER_CID}
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


QUERY_TEXT = (
    st.text()
    | st.from_regex(r"\A[0-9]{1,6000}\Z")
    | st.sampled_from(
        ["", "0", "-1", str(2**63 - 1), str(2**63), str(2**64), "1e3", " 1", "\uff11", "\u0663"]
    )
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["uid", "cid", "limit", "before", "after"]), QUERY_TEXT))
def test_every_query_string_is_a_value_in_bounds_or_a_4xx(query: dict[str, str]) -> None:
    """What a gateway forwards from a stranger: a value in bounds, or 4001/4002/4005."""
    for parse in (
        lambda: parse_uid(query.get("uid")),
        lambda: parse_cid(query.get("cid")),
        lambda: messages_page_request(query),
    ):
        try:
            value = parse()
        except RequestError as exc:
            assert exc.code in {ErrorCode.BAD_USER_ID, ErrorCode.BAD_CHAT_ID, ErrorCode.BAD_PAGING}
            assert len(exc.message) < 200  # what a stranger sent is not echoed in full
            continue
        if isinstance(value, int):
            assert 1 <= value <= 2**63 - 1
        elif isinstance(value, PageRequest):
            assert 1 <= value.limit <= 200


@pytest.mark.parametrize("raw", ["9" * 5000, str(2**63), "0" * 30 + "1"])
def test_uids_past_the_range_are_4002_not_5000(raw: str) -> None:
    with pytest.raises(RequestError) as err:
        parse_uid(raw)
    assert err.value.code is ErrorCode.BAD_USER_ID
    assert parse_uid(str(2**63 - 1)) == 2**63 - 1
