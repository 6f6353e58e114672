"""Validation of sign-up bodies, ids, members, text, paging and Idempotency-Key."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import MultiDict

from contracts.errors import ErrorCode
from contracts.records import TEXT_MAX
from contracts.requests import RequestProblem
from gateway.domain import requests as parse
from gateway.domain.users import parse_sign_in, parse_sign_up
from gateway.errors import GatewayError

CID = "65f0c0ffee0123456789abcd"
GOOD = {"username": "alice", "password": "secret1", "passwordConfirm": "secret1", "gender": "f"}


def _code(call: Any, *args: Any) -> ErrorCode:
    with pytest.raises((GatewayError, RequestProblem)) as caught:
        call(*args)
    code: ErrorCode = caught.value.code
    return code


def test_sign_up_accepts_a_good_body() -> None:
    form = parse_sign_up({**GOOD, "username": "Alice"})
    assert (form.username.display, form.username.canonical) == ("Alice", "alice")
    assert (form.password, form.gender) == ("secret1", "f")


@pytest.mark.parametrize(
    "change",
    [
        {"username": "abcd"},
        {"username": "a" * 31},
        {"username": " alice"},
        {"username": "ali\tce"},
        {"username": 12345},
        {"password": "12345", "passwordConfirm": "12345"},
        {"password": "p" * 65, "passwordConfirm": "p" * 65},
        {"passwordConfirm": "other12"},
        {"gender": "x"},
        {"gender": None},
    ],
)
def test_sign_up_rejects_with_4000(change: dict[str, Any]) -> None:
    assert _code(parse_sign_up, {**GOOD, **change}) is ErrorCode.MALFORMED


def test_sign_up_bounds_are_inclusive() -> None:
    for name, password in (("a" * 5, "p" * 6), ("a" * 30, "p" * 64)):
        body = {**GOOD, "username": name, "password": password, "passwordConfirm": password}
        parsed = parse_sign_up(body)  # taken whole: nothing cut or changed at the bounds
        assert (parsed.username.canonical, parsed.password) == (name, password)
    for name, password in (("a" * 4, "p" * 6), ("a" * 31, "p" * 6), ("a" * 5, "p" * 65)):
        body = {**GOOD, "username": name, "password": password, "passwordConfirm": password}
        assert _code(parse_sign_up, body) is ErrorCode.MALFORMED


def test_sign_in_ignores_extra_fields_and_needs_strings() -> None:
    creds = parse_sign_in({"username": "alice", "password": "secret1", "extra": 1})
    assert (creds.username.canonical, creds.password) == ("alice", "secret1")
    assert _code(parse_sign_in, {"username": "alice"}) is ErrorCode.MALFORMED


def test_chat_id() -> None:
    assert parse.chat_id(CID) == CID
    for bad in ("", "xyz", CID.upper(), CID + "0", "g" * 24):
        assert _code(parse.chat_id, bad) is ErrorCode.BAD_CHAT_ID


def test_new_chat_members() -> None:
    assert parse.new_chat_members({"users": [1, 3, 1]}, 1) == [1, 3]
    assert _code(parse.new_chat_members, {"users": [1, 1]}, 1) is ErrorCode.TOO_FEW_USERS
    assert _code(parse.new_chat_members, {"users": [2, 3]}, 1) is ErrorCode.FORBIDDEN
    assert _code(parse.new_chat_members, {"users": "1,2"}, 1) is ErrorCode.MALFORMED
    assert _code(parse.new_chat_members, {}, 1) is ErrorCode.MALFORMED
    for bad in ("2", 0, -1, 1.5, True, None, 2**63):
        assert _code(parse.new_chat_members, {"users": [1, bad]}, 1) is ErrorCode.BAD_USER_ID


def test_added_members_needs_one() -> None:
    assert parse.added_members({"users": [4]}) == [4]
    assert _code(parse.added_members, {"users": []}) is ErrorCode.MALFORMED


def test_message_text() -> None:
    assert parse.message_text({"txt": " hi "}) == " hi "
    assert parse.message_text({"txt": "x" * TEXT_MAX}) == "x" * TEXT_MAX
    assert _code(parse.message_text, {"txt": ""}) is ErrorCode.BAD_TEXT
    assert _code(parse.message_text, {"txt": " \n\t"}) is ErrorCode.BAD_TEXT
    assert _code(parse.message_text, {"txt": "x" * (TEXT_MAX + 1)}) is ErrorCode.BAD_TEXT
    assert _code(parse.message_text, {"txt": 5}) is ErrorCode.MALFORMED
    assert _code(parse.message_text, {"text": "hi"}) is ErrorCode.MALFORMED


def test_idempotency_key() -> None:
    assert parse.idempotency_key(None) is None
    assert parse.idempotency_key("retry-1") == "retry-1"
    for bad in ("", "a b", "k" * 256, "ключ"):
        assert _code(parse.idempotency_key, bad) is ErrorCode.MALFORMED


def test_paging_defaults_and_params() -> None:
    assert parse.chat_paging({}).params() == {"limit": "50"}
    assert parse.chat_paging({"limit": "200", "cursor": "WzEsMiwieCJd"}).params() == {
        "limit": "200",
        "cursor": "WzEsMiwieCJd",
    }
    assert parse.message_paging({"limit": "1", "after": CID}).params() == {
        "limit": "1",
        "after": CID,
    }
    assert parse.message_paging({"before": CID}).params() == {"limit": "50", "before": CID}
    assert parse.message_paging({"beforeSeq": "7"}).params() == {"limit": "50", "beforeSeq": "7"}
    assert parse.message_paging({"afterSeq": "0"}).params() == {"limit": "50", "afterSeq": "0"}


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "-1"},
        {"limit": "abc"},
        {"limit": "1.5"},
        {"limit": "٣"},
        {"limit": "99999999999999999999"},
        {"before": "nope"},
        {"after": CID.upper()},
        {"before": CID, "after": CID},
        {"beforeSeq": "1", "after": CID},
        {"afterSeq": "x"},
    ],
)
def test_bad_message_paging_is_4005(query: dict[str, str]) -> None:
    assert _code(parse.message_paging, query) is ErrorCode.BAD_PAGING


def test_bad_chat_cursor_is_4005() -> None:
    for bad in ("a b", "x" * 201, "é", "a=b"):
        assert _code(parse.chat_paging, {"cursor": bad}) is ErrorCode.BAD_PAGING


def test_each_list_refuses_only_its_own_paging_parameters_given_twice() -> None:
    """A parameter of the other list is ignored, once or twice; the list's own one
    given twice is 4005."""
    chats = MultiDict([("limit", "5"), ("before", CID), ("before", "x"), ("afterSeq", "1")])
    assert parse.chat_paging(chats).params() == {"limit": "5"}
    history = MultiDict([("limit", "5"), ("cursor", "WzEsMiwieCJd"), ("cursor", "x")])
    assert parse.message_paging(history).params() == {"limit": "5"}
    twice_cursor = MultiDict([("cursor", "WzEsMiwieCJd"), ("cursor", "WzEsMiwieCJd")])
    assert _code(parse.chat_paging, twice_cursor) is ErrorCode.BAD_PAGING
    twice_before = MultiDict([("before", CID), ("before", CID)])
    assert _code(parse.message_paging, twice_before) is ErrorCode.BAD_PAGING
