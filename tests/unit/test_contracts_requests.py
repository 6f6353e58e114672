"""contracts.requests: the rules both the gateway and the worker apply to request values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from contracts import requests as rules
from contracts.errors import ErrorCode
from contracts.requests import LIMIT_DEFAULT, RequestProblem, limit, seq_param
from dialogue_worker.entrypoints.requests import chats_query, messages_query
from gateway.domain.requests import chat_paging, message_paging
from gateway.errors import GatewayError

CID = "65f0c0ffee0000000000beef"
OTHER_CID = "65f0c0ffee0000000000cafe"


def code_of(call: Any, *args: Any) -> ErrorCode:
    with pytest.raises(RequestProblem) as err:
        call(*args)
    code: ErrorCode = err.value.code
    return code


@pytest.mark.parametrize("raw", [None, "", "0", "-3", "abc", "1.5", "\u0663", "+1", " 1"])
def test_bad_uid_is_4002(raw: str | None) -> None:
    assert code_of(rules.user_id, raw) is ErrorCode.BAD_USER_ID


@pytest.mark.parametrize("raw", ["9" * 5000, str(2**63), "0" * 30, "0" * 5000 + str(2**63)])
def test_uids_past_the_range_are_4002_not_5000(raw: str) -> None:
    assert code_of(rules.user_id, raw) is ErrorCode.BAD_USER_ID
    assert rules.user_id(str(2**63 - 1)) == 2**63 - 1


def test_uid_and_cid_parse() -> None:
    assert rules.user_id("42") == 42
    assert rules.chat_id(CID) == CID


@pytest.mark.parametrize("raw", [None, "", "xyz", CID.upper(), CID + "0", 7])
def test_bad_cid_is_4001(raw: object) -> None:
    assert code_of(rules.chat_id, raw) is ErrorCode.BAD_CHAT_ID


def test_user_ids_drop_repeats_and_keep_the_order() -> None:
    assert rules.user_ids([3, 1, 3, 2]) == [3, 1, 2]


@pytest.mark.parametrize("users", [[1], [5, 5], []])
def test_a_new_chat_needs_two_distinct_users_4004(users: list[int]) -> None:
    assert code_of(rules.new_chat_users, users) is ErrorCode.TOO_FEW_USERS
    assert rules.new_chat_users([*users, 7, 8]) == list(dict.fromkeys([*users, 7, 8]))


def test_adding_nobody_is_4000_for_gateway_and_worker_alike() -> None:
    assert code_of(rules.added_users, []) is ErrorCode.MALFORMED
    assert rules.added_users([4, 4]) == [4]


@pytest.mark.parametrize("value", [None, 3, {"users": [1]}, "x", list(range(1, 1002))])
def test_malformed_users_is_4000(value: object) -> None:
    assert code_of(rules.user_ids, value) is ErrorCode.MALFORMED


@pytest.mark.parametrize(
    "uid", [0, -1, "2", 1.5, 0.0, float("nan"), float("inf"), 2.0**60, True, None, 2**63]
)
def test_bad_user_in_a_list_is_4002(uid: object) -> None:
    assert code_of(rules.user_ids, [1, uid]) is ErrorCode.BAD_USER_ID


def test_integral_json_numbers_are_integers_as_json_schema_says() -> None:
    """`2.0` is an integer to JSON Schema (and so to the OpenAPI document); below 2**53
    it is exact and taken, from there on a float no longer names one integer: the text
    9007199254740993.0 reads as the double 2**53, and was taken as user 2**53."""
    assert rules.user_ids([2.0, 2, 4e1]) == [2, 40]
    assert rules.read_seq({"seq": 7.0}) == 7
    assert rules.json_int(2.0**53 - 1) == 2**53 - 1
    assert rules.json_int(-(2.0**53) + 1) == -(2**53) + 1
    for text in ("9007199254740992.0", "9007199254740993.0", "9.007199254740993e15"):
        assert rules.json_int(orjson.loads(text)) is None, text
    assert rules.json_int(-(2.0**53)) is None
    assert rules.json_int(2.0**53 * 2) is None


def test_paging_parameters() -> None:
    query = messages_query({"uid": "1", "cid": CID}).history
    assert (query.limit, query.cursor, query.direction.value) == (LIMIT_DEFAULT, None, "before")
    after = messages_query({"uid": "1", "cid": CID, "after": OTHER_CID, "limit": "200"}).history
    assert (after.limit, after.cursor, after.direction.value) == (200, OTHER_CID, "after")
    by_seq = messages_query({"uid": "1", "cid": CID, "beforeSeq": "41"}).history
    assert (by_seq.cursor, by_seq.direction.value) == (41, "before")
    since = messages_query({"uid": "1", "cid": CID, "afterSeq": "0"}).history
    assert (since.cursor, since.direction.value) == (0, "after")
    chats = chats_query({"uid": "1", "limit": "1"})
    assert (chats.uid, chats.limit, chats.cursor) == (1, 1, None)


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "ten"},
        {"before": "nope"},
        {"after": "123"},
        {"before": CID, "after": OTHER_CID},
        {"beforeSeq": "1", "afterSeq": "2"},
        {"before": CID, "beforeSeq": "2"},
        {"beforeSeq": "-1"},
        {"afterSeq": str(2**63)},
        {"afterSeq": "1.5"},
    ],
)
def test_bad_paging_is_4005(query: dict[str, str]) -> None:
    full = {"uid": "1", "cid": CID, **query}
    assert code_of(messages_query, full) is ErrorCode.BAD_PAGING


QUERY_TEXT = (
    st.text()
    | st.from_regex(r"\A[0-9]{1,6000}\Z")
    | st.sampled_from(
        ["", "0", "-1", str(2**63 - 1), str(2**63), str(2**64), "1e3", " 1", "\uff11", "\u0663"]
    )
    | st.just(CID)  # so that a query can be taken, and its values checked
)


#: Each list's query parser, on the gateway and on the worker, with its own paging names.
PARSERS: list[tuple[Callable[[MultiDict[str]], object], tuple[str, ...]]] = [
    (chat_paging, rules.LIST_PAGING),
    (chats_query, rules.LIST_PAGING),
    (message_paging, rules.HISTORY_PAGING),
    (messages_query, rules.HISTORY_PAGING),
]


def _query(
    parse: Callable[[MultiDict[str]], object], pairs: list[tuple[str, str]]
) -> MultiDict[str]:
    """`pairs` as a query string; to the worker with the `uid` and `cid` the gateway adds."""
    worker = parse in (chats_query, messages_query)
    return MultiDict([*pairs, ("uid", "7"), ("cid", CID)] if worker else pairs)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["uid", "cid", "limit", "before", "after", "beforeSeq", "afterSeq"]),
        QUERY_TEXT,
    )
)
def test_every_query_string_is_a_value_in_bounds_or_a_4xx(query: dict[str, str]) -> None:
    """What a stranger can send: a value in bounds, or 4001/4002/4005 with a short echo."""
    try:
        decoded = messages_query(query)
    except RequestProblem as exc:
        assert exc.code in {ErrorCode.BAD_USER_ID, ErrorCode.BAD_CHAT_ID, ErrorCode.BAD_PAGING}
        assert len(exc.message) < 200  # what a stranger sent is not echoed in full
        return
    assert 1 <= decoded.uid <= 2**63 - 1 and 1 <= decoded.history.limit <= 200
    assert rules.chat_id(decoded.cid) == decoded.cid


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["limit", "cursor", "before", "after", "beforeSeq", "afterSeq", "x"]),
            QUERY_TEXT,
        ),
        max_size=4,
    )
)
def test_a_paging_parameter_given_twice_is_a_4005_everywhere(pairs: list[tuple[str, str]]) -> None:
    """`?limit=5&limit=abc` used to be read as limit 5, the second value dropped silently:
    which one the caller meant is a guess. Only a route's own parameters count."""
    for parse, names in PARSERS:
        query = _query(parse, pairs)
        twice = any(len(query.getall(name)) > 1 for name in names if name in query)
        try:
            parse(query)
        except (RequestProblem, GatewayError) as exc:
            if twice:
                assert exc.code is ErrorCode.BAD_PAGING
            else:
                assert "more than once" not in exc.message, (parse.__name__, pairs)
            continue
        assert not twice, (parse.__name__, pairs)


@pytest.mark.parametrize(("parse", "names"), PARSERS)
def test_only_the_routes_own_paging_parameters_must_be_given_once(
    parse: Callable[[MultiDict[str]], object], names: tuple[str, ...]
) -> None:
    """`GET /v1/chats?before=a&before=b` was 4005 "given more than once" while one
    `before` there is ignored (and a repeated `cursor` on history likewise): the other
    list's parameters are ignored however often they are given, on gateway and worker."""
    for name in dict.fromkeys([*rules.LIST_PAGING, *rules.HISTORY_PAGING]):
        query = _query(parse, [(name, ""), (name, "")])  # empty: absent, if taken at all
        if name in names:
            assert code_of(parse, query) is ErrorCode.BAD_PAGING, name
        else:
            parse(query)
            parse(_query(parse, [(name, "a"), (name, "b")]))


@given(st.text())
def test_an_echoed_value_is_short_whatever_its_characters(value: str) -> None:
    """repr() writes a control or astral character as up to ten: 21 of them made a 200
    character message out of a 40 character echo."""
    for problem in (lambda: limit(value), lambda: seq_param("afterSeq", value)):
        try:
            problem()
        except RequestProblem as exc:
            assert len(exc.message) < 100, exc.message


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["1", "7", "x", ""]), min_size=1, max_size=3),
    st.lists(st.sampled_from([CID, OTHER_CID, "zz"]), min_size=1, max_size=3),
)
def test_who_and_which_chat_are_given_once_to_the_worker(uids: list[str], cids: list[str]) -> None:
    """Found in review: `?uid=1&uid=2` was answered for user 1 and `?cid=<id>&cid=zz` for
    the chat, the rest dropped silently; a proxy reading the last value would have acted
    for someone else. Given twice, the worker refuses them: 4002 and 4001."""
    query = MultiDict([*(("uid", u) for u in uids), *(("cid", c) for c in cids)])
    for parse in (chats_query, messages_query):
        try:
            decoded = parse(query)
        except RequestProblem as exc:
            if len(uids) > 1:
                assert exc.code is ErrorCode.BAD_USER_ID and "more than once" in exc.message
            elif parse is messages_query and len(cids) > 1 and uids[0].isdigit():
                assert exc.code is ErrorCode.BAD_CHAT_ID and "more than once" in exc.message
            continue
        assert len(uids) == 1 and str(decoded.uid) == uids[0]  # type: ignore[attr-defined]
        if parse is messages_query:
            assert len(cids) == 1 and decoded.cid == cids[0]  # type: ignore[attr-defined]


def _outcome(parse: Callable[[str], object], raw: str) -> object:
    try:
        return parse(raw)
    except RequestProblem as exc:
        return exc.code


@given(st.integers(0, 2**64), st.integers(1, 40))
def test_leading_zeros_change_nothing(n: int, zeros: int) -> None:
    """An integer in a query string means its value, whatever zeros lead it. Found in
    review: `limit=0200` was 200 and `limit=00050` a 4005; a seq or uid of 20 characters
    was refused though its value was 1."""
    plain, padded = str(n), "0" * zeros + str(n)
    parsers: list[Callable[[str], object]] = [
        limit,
        lambda raw: seq_param("beforeSeq", raw),
        rules.user_id,
    ]
    for parse in parsers:
        assert _outcome(parse, padded) == _outcome(parse, plain)
