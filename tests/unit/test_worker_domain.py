"""Pure rules of the worker: request values, membership, paging, record sorting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from contracts.errors import ErrorCode
from contracts.records import TEXT_MAX
from dialogue_worker.domain.chats import (
    ChatView,
    new_chat_users,
    require_member,
)
from dialogue_worker.domain.paging import (
    Direction,
    PageRequest,
    cut_page,
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


def test_new_chat_users_are_distinct_and_sorted() -> None:
    assert new_chat_users([3, 1, 3, 2]) == [1, 2, 3]


@pytest.mark.parametrize("users", [[1], [5, 5], []])
def test_fewer_than_two_distinct_users_is_4004(users: list[int]) -> None:
    assert code_of(new_chat_users, users) is ErrorCode.TOO_FEW_USERS


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
