"""The shared record model, its published JSON Schema and the error codes."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import jsonschema
import jsonschema_rs
import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import api
from contracts.__main__ import EVENTS_SCHEMA_FILE, SCHEMA_FILE, events_schema_text, schema_text
from contracts.errors import ErrorCode, error_body
from contracts.events import (
    ChatCreated,
    ChatRead,
    EventChat,
    EventMessage,
    MembersAdded,
    MessageCreated,
    decode_event,
)
from contracts.ids import is_object_id, new_id
from contracts.live import SINCE_MAX, Hello, HelloProblem, parse_hello
from contracts.records import (
    CREATED_MIN,
    CREATED_SCHEMA_MAX,
    TEXT_MAX,
    InvalidRecord,
    MessageRecord,
    acceptable_text,
    decode_record,
)

GOOD: dict[str, Any] = {
    "v": 1,
    "id": "65f0c0ffee0000000000abcd",
    "cid": "65f0c0ffee0000000000beef",
    "uid": 7,
    "text": "hello",
    "createdAt": 1_700_000_000,
}

BAD: list[tuple[str, Any]] = [
    ("malformed JSON", b"{not json"),
    ("not a JSON object", b"[1,2]"),
    ("unsupported schema version", {**GOOD, "v": 2}),
    ("uid", {**GOOD, "uid": "7"}),
    ("uid", {**GOOD, "uid": True}),
    ("uid", {**GOOD, "uid": 0}),
    ("id", {**GOOD, "id": "xyz"}),
    ("cid", {k: v for k, v in GOOD.items() if k != "cid"}),
    ("text", {**GOOD, "text": "   "}),
    ("text", {**GOOD, "text": "x" * (TEXT_MAX + 1)}),
    ("createdAt", {**GOOD, "createdAt": -1}),
    ("extra", {**GOOD, "extra": 1}),
]


def _raw(value: Any) -> bytes:
    return value if isinstance(value, bytes) else orjson.dumps(value)


def test_good_record_round_trips() -> None:
    record = decode_record(_raw(GOOD))
    assert record == MessageRecord(**GOOD)
    assert orjson.loads(record.to_bytes()) == GOOD
    assert record.key() == GOOD["cid"].encode()


@pytest.mark.parametrize(("reason", "value"), BAD)
def test_bad_records_say_why(reason: str, value: Any) -> None:
    with pytest.raises(InvalidRecord) as err:
        decode_record(_raw(value))
    assert reason in err.value.reason


def test_published_schema_is_current() -> None:
    assert SCHEMA_FILE.read_text() == schema_text(), "run: python -m contracts"


def test_published_schema_agrees_with_the_model() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid(GOOD)
    for _, value in BAD:
        if isinstance(value, dict):
            assert not validator.is_valid(value), value


def test_error_codes_map_to_statuses() -> None:
    assert ErrorCode.NOT_MEMBER.status == 403
    assert ErrorCode.NO_WORKER.status == 503 and ErrorCode.NO_WORKER.retryable
    assert not ErrorCode.BAD_TEXT.retryable
    assert error_body(ErrorCode.NOT_MEMBER, "user does not belong to chat") == {
        "object": "error",
        "code": "4031",
        "message": "user does not belong to chat",
    }


def test_ids_keep_their_order_but_one_does_not_predict_the_next() -> None:
    ids = [new_id() for _ in range(1000)]
    assert all(is_object_id(i) for i in ids) and len(set(ids)) == 1000
    assert ids == sorted(ids)  # one process, within a second: in the order made
    tails = [i[14:] for i in ids]  # the last 5 bytes are random per id
    assert len(set(tails)) == 1000
    steps = {int(b[14:], 16) - int(a[14:], 16) for a, b in itertools.pairwise(ids)}
    assert len(steps) > 990  # no constant step to extrapolate from


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("uid", 2**63),
        ("uid", 2**64),
        ("createdAt", 2**63),
        ("createdAt", 978_307_199),
        ("createdAt", 4_102_444_801),
        ("text", "nul \x00"),
    ],
)
def test_values_storage_cannot_hold_are_refused_by_model_and_schema(field: str, value: Any) -> None:
    raw = json.dumps({**GOOD, field: value}).encode()
    with pytest.raises(InvalidRecord) as err:
        decode_record(raw)
    assert field in err.value.reason
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    assert not validator.is_valid({**GOOD, field: value})


def test_created_at_more_than_a_day_ahead_is_refused() -> None:
    with pytest.raises(InvalidRecord, match="future"):
        decode_record(orjson.dumps({**GOOD, "createdAt": int(time.time()) + 2 * 86_400}))
    assert decode_record(orjson.dumps({**GOOD, "createdAt": int(time.time()) + 3600}))


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_body_is_the_documented_error_shape(code: ErrorCode) -> None:
    body = error_body(code, "what went wrong")
    assert api.Error.model_validate(body).model_dump(mode="json") == body


#: Every whitespace character is below U+3100; U+FEFF is whitespace to ECMA-262 only.
CHARACTERS = [chr(c) for c in range(0x3100)] + ["\ufeff", "\U0001f600", "\U0010ffff"]


def test_the_record_text_rule_is_one_rule_in_the_schema_the_worker_and_the_gateway() -> None:
    """The published schema (an ECMA-262 regex, as most validators read it), the worker's
    model (a Rust regex) and the gateway's check accept exactly the same texts: an
    external producer's record that passes the schema is never dead-lettered for its
    text, and the gateway never produces a record the schema refuses."""
    schema = jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text()))
    for char in CHARACTERS:
        for text in (char, f"a{char}", f"{char} ", char * 3):
            record = {**GOOD, "text": text}
            rule = acceptable_text(text)
            assert schema.is_valid(record) == rule, repr(text)
            try:
                MessageRecord.model_validate(record)
            except ValidationError:
                assert not rule, repr(text)
            else:
                assert rule, repr(text)


@given(st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([7.0, 2.0**53, 2.0**63]))
def test_a_uid_written_as_a_float_is_read_as_json_schema_reads_it(uid: float) -> None:
    """JSON Schema's "integer" includes 7.0 (Python's json.dumps(7.0) writes it): such a
    record is stored with uid 7, and any other float is a dead letter, never a 5xx."""
    raw = json.dumps({**GOOD, "uid": uid}).encode()  # NaN and Infinity as Python writes them
    if uid.is_integer() and 1 <= uid < 2**53:
        record = decode_record(raw)
        assert type(record.uid) is int and record.uid == int(uid)
        assert orjson.loads(record.to_bytes())["uid"] == int(uid)
    else:
        with pytest.raises(InvalidRecord):
            decode_record(raw)


def test_published_events_schema_is_current_and_requires_what_every_event_carries() -> None:
    assert EVENTS_SCHEMA_FILE.read_text() == events_schema_text(), "run: python -m contracts"
    schema = json.loads(EVENTS_SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    cid = new_id()
    message = api.Message(id=new_id(), cid=cid, uid=7, createdAt=1_700_000_000, text="hi", seq=3)
    chat = api.Chat(id=cid, users=[7, 8], createdAt=1_700_000_000)
    events = [
        MessageCreated(cid=cid, seq=3, message=message),
        ChatCreated(cid=cid, chat=chat),
        MembersAdded(cid=cid, users=[9], members=[7, 8, 9]),
        ChatRead(cid=cid, uid=7, seq=3),
    ]
    for event in events:
        published = orjson.loads(event.to_bytes())
        validator.validate(published)
        for field in ("v", "type"):  # every event carries them: the schema requires them
            partial = {k: v for k, v in published.items() if k != field}
            assert not validator.is_valid(partial), (event.type, field)
        without_v = {k: v for k, v in published.items() if k != "v"}
        with pytest.raises(ValueError, match="v is missing"):  # as the schema reads it
            decode_event(orjson.dumps(without_v))
    created = orjson.loads(events[1].to_bytes())
    for field in ("object", "lastSeq", "lastMessage", "readSeq", "unread"):  # always written
        chat = {k: v for k, v in created["chat"].items() if k != field}
        assert not validator.is_valid(created | {"chat": chat}), field
    stored = orjson.loads(events[0].to_bytes())
    for seq in (None, "absent"):  # a stored message always has its seq
        message = {k: v for k, v in stored["message"].items() if k != "seq"}
        message |= {} if seq == "absent" else {"seq": seq}
        assert not validator.is_valid(stored | {"message": message}), seq


def _an_event_of_each_place(cid: str) -> dict[str, tuple[dict[str, Any], Any]]:
    """Where an event carries a user id or a seq: a valid event, and a function putting a
    value there."""
    message = {"object": "message", "id": new_id(), "cid": cid, "uid": 7, "createdAt": 1}
    message |= {"text": "x", "seq": 3}
    last = {"id": new_id(), "seq": 3, "uid": 7, "text": "x", "createdAt": 1}
    chat = {"object": "chat", "id": cid, "users": [7, 8], "createdAt": 1, "lastSeq": 3}
    chat |= {"lastMessage": last, "readSeq": 0, "unread": 3}
    created = {"v": 1, "type": "message.created", "cid": cid, "seq": 3, "message": message}
    opened = {"v": 1, "type": "chat.created", "cid": cid, "chat": chat}
    added = {"v": 1, "type": "chat.members_added", "cid": cid, "users": [9]}
    added |= {"members": [7, 8, 9]}
    read = {"v": 1, "type": "chat.read", "cid": cid, "uid": 7, "seq": 3}
    return {
        "message.created seq": (created, lambda v: created | {"seq": v}),
        "message.created message.uid": (
            created,
            lambda v: created | {"message": message | {"uid": v}},
        ),
        "message.created message.seq": (
            created,
            lambda v: created | {"message": message | {"seq": v}},
        ),
        "chat.created chat.users": (opened, lambda v: opened | {"chat": chat | {"users": [7, v]}}),
        "chat.created chat.lastSeq": (opened, lambda v: opened | {"chat": chat | {"lastSeq": v}}),
        "chat.created chat.lastMessage.uid": (
            opened,
            lambda v: opened | {"chat": chat | {"lastMessage": last | {"uid": v}}},
        ),
        "chat.members_added users": (added, lambda v: added | {"users": [v]}),
        "chat.members_added members": (added, lambda v: added | {"members": [7, v]}),
        "chat.read uid": (read, lambda v: read | {"uid": v}),
        "chat.read seq": (read, lambda v: read | {"seq": v}),
    }


PLACES = sorted(_an_event_of_each_place(new_id()))


@given(st.sampled_from(PLACES), st.sampled_from([-(2**63), -1, 2**63, 2**64, 10**30]))
def test_an_event_seq_or_uid_past_int64_is_not_an_event_wherever_it_is(
    place: str, value: int
) -> None:
    """Seqs and user ids are int64s where they are stored: a larger one on the topic
    comes from no worker, and a frame with it could not even be encoded. Found in review:
    only chat.read's uid was bounded; a forged message.created with an author past int64
    (or below 1) was decoded and pushed to sockets. The schema says the same."""
    event, put = _an_event_of_each_place(new_id())[place]
    validator = jsonschema.Draft202012Validator(json.loads(EVENTS_SCHEMA_FILE.read_text()))
    assert decode_event(orjson.dumps(event)) and validator.is_valid(event)
    forged = put(value)
    raw = json.dumps(forged).encode()  # orjson cannot write past 64 bits
    with pytest.raises(ValidationError):
        decode_event(raw)
    assert not validator.is_valid(forged), place


#: The keywords of JSON Schema 2020-12 (core, applicator, unevaluated, validation,
#: meta-data, format, content): what a validator in strict mode (Ajv's default) compiles.
KEYWORDS_2020_12 = frozenset(
    "$schema $id $ref $anchor $dynamicRef $dynamicAnchor $vocabulary $comment $defs "
    "allOf anyOf oneOf not if then else dependentSchemas prefixItems items contains "
    "properties patternProperties additionalProperties propertyNames unevaluatedItems "
    "unevaluatedProperties type const enum multipleOf maximum exclusiveMaximum minimum "
    "exclusiveMinimum maxLength minLength pattern maxItems minItems uniqueItems maxContains "
    "minContains maxProperties minProperties required dependentRequired title description "
    "default deprecated readOnly writeOnly examples format contentEncoding "
    "contentMediaType contentSchema".split()
)
_SCHEMA_MAPS = {"$defs", "properties", "patternProperties", "dependentSchemas"}
_SCHEMA_LISTS = {"allOf", "anyOf", "oneOf", "prefixItems"}
_SCHEMAS = {"not", "if", "then", "else", "items", "contains", "additionalProperties"}
_SCHEMAS |= {"propertyNames", "unevaluatedItems", "unevaluatedProperties", "contentSchema"}


def _unknown_keywords(schema: Any, where: str = "#") -> list[str]:
    if not isinstance(schema, dict):
        return []  # true / false
    unknown = [f"{where}/{k}" for k in schema if k not in KEYWORDS_2020_12]
    for key, value in schema.items():
        if key in _SCHEMA_MAPS:
            for name, sub in value.items():
                unknown += _unknown_keywords(sub, f"{where}/{key}/{name}")
        elif key in _SCHEMA_LISTS:
            for i, sub in enumerate(value):
                unknown += _unknown_keywords(sub, f"{where}/{key}/{i}")
        elif key in _SCHEMAS:
            unknown += _unknown_keywords(value, f"{where}/{key}")
    return unknown


@pytest.mark.parametrize("path", [SCHEMA_FILE, EVENTS_SCHEMA_FILE], ids=lambda p: p.name)
def test_the_published_schemas_hold_json_schema_keywords_only(path: Any) -> None:
    """Found in review: the events schema carried OpenAPI's `discriminator`, and Ajv (in
    its default strict mode) refused to compile it, while the Python validators the tests
    used ignore unknown keywords."""
    assert _unknown_keywords(json.loads(path.read_text())) == []


@given(
    st.sampled_from(["uid", "seq", "users", "members", "cid", "v"]),
    st.one_of(
        st.booleans(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=5),
        st.lists(st.one_of(st.booleans(), st.text(max_size=3), st.floats()), min_size=1),
    ),
)
def test_an_event_is_decoded_as_the_schema_reads_it_or_refused(field: str, value: Any) -> None:
    """Every event field given a value of another JSON type than the schema's: refused by
    the schema and by decode_event (which made `"uid": true` user 1, `["1"]` [1] and
    `"v": true` version 1)."""
    schema = json.loads(EVENTS_SCHEMA_FILE.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    cid = new_id()
    events = {
        "uid": {"v": 1, "type": "chat.read", "cid": cid, "uid": 7, "seq": 3},
        "seq": {"v": 1, "type": "chat.read", "cid": cid, "uid": 7, "seq": 3},
        "users": {
            "v": 1,
            "type": "chat.members_added",
            "cid": cid,
            "users": [9],
            "members": [7, 9],
        },
        "members": {"v": 1, "type": "chat.members_added", "cid": cid, "users": [9], "members": [7]},
        "cid": {"v": 1, "type": "chat.read", "cid": cid, "uid": 7, "seq": 3},
        "v": {"v": 1, "type": "chat.read", "cid": cid, "uid": 7, "seq": 3},
    }
    raw = events[field] | {field: value}
    values = value if isinstance(value, list) else [value]
    # From 2**53 on a float no longer tells whole numbers apart: refused, as records do.
    inexact = any(type(v) is float and abs(v) >= 2**53 for v in values)
    if validator.is_valid(raw) and not inexact:
        decoded = decode_event(orjson.dumps(raw))
        assert orjson.loads(decoded.to_bytes()) == raw
    else:  # (`"v": true` passed Literal[1], True being 1 to Python: found in review)
        with pytest.raises(ValueError):  # pydantic's ValidationError is one
            decode_event(orjson.dumps(raw))


def test_an_event_lacking_a_field_the_schema_requires_is_refused() -> None:
    """The models' defaults (for writers) filled such fields in: a chat.created without
    its chat's counts was read with lastSeq 0 (found in review). Every field of every
    event, nested ones too, left out in turn: the schema and decode_event both refuse."""
    validator = jsonschema.Draft202012Validator(json.loads(EVENTS_SCHEMA_FILE.read_text()))
    cid = new_id()
    chat = api.Chat(id=cid, users=[1, 2], createdAt=1, lastSeq=2)
    message = api.Message(id=new_id(), cid=cid, uid=1, createdAt=1, text="x", seq=2)
    events = [
        ChatCreated(cid=cid, chat=EventChat.model_validate(chat.model_dump())),
        MessageCreated(cid=cid, seq=2, message=EventMessage.model_validate(message.model_dump())),
        MembersAdded(cid=cid, users=[3], members=[1, 2, 3]),
        ChatRead(cid=cid, uid=1, seq=2),
    ]
    for event in events:
        whole = orjson.loads(event.to_bytes())
        assert decode_event(orjson.dumps(whole)) == event
        for path in _paths(whole):
            lacking = _without(whole, path)
            assert not validator.is_valid(lacking), path
            with pytest.raises(ValueError):
                decode_event(orjson.dumps(lacking))


@pytest.mark.parametrize(
    "bad", ["x", "65F0C0FFEE0000000000BEEF", "65f0c0ffee0000000000beef\n", "65f0c0ffee00"]
)
def test_an_event_whose_nested_id_is_not_an_id_is_refused_as_the_schema_does(bad: str) -> None:
    """The nested ids (a chat's, a message's and its chat's, a preview's) were documented
    with their form but read as any string: the gateway's feed took events a schema-based
    consumer refuses, and passed them on to its sockets (found in review)."""
    validator = jsonschema.Draft202012Validator(json.loads(EVENTS_SCHEMA_FILE.read_text()))
    cid = new_id()
    chat = api.Chat(id=cid, users=[1, 2], createdAt=1, lastSeq=2)
    message = api.Message(id=new_id(), cid=cid, uid=1, createdAt=1, text="x", seq=2)
    created = orjson.loads(
        ChatCreated(cid=cid, chat=EventChat.model_validate(chat.model_dump())).to_bytes()
    )
    posted = orjson.loads(
        MessageCreated(
            cid=cid, seq=2, message=EventMessage.model_validate(message.model_dump())
        ).to_bytes()
    )
    for whole, path in (
        (created, ("chat", "id")),
        (posted, ("message", "id")),
        (posted, ("message", "cid")),
    ):
        wrong = _without(whole, path)
        wrong[path[0]] = wrong[path[0]] | {path[1]: bad}
        assert not validator.is_valid(wrong), path
        with pytest.raises(ValueError):
            decode_event(orjson.dumps(wrong))


def _paths(value: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key of `value` and of the objects in it, as paths."""
    found = []
    for key, inner in value.items():
        found.append((*prefix, key))
        if isinstance(inner, dict):
            found += _paths(inner, (*prefix, key))
    return found


def _without(value: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    head, *rest = path
    if not rest:
        return {k: v for k, v in value.items() if k != head}
    return value | {head: _without(value[head], tuple(rest))}


@pytest.mark.parametrize("tail", ["\n", "\r\n", " "])
def test_an_id_with_a_trailing_newline_is_refused_by_every_schema_reader(tail: str) -> None:
    """Python's `re` lets `$` match before a final newline: the lengths close that."""
    records = jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))
    events = jsonschema.Draft202012Validator(json.loads(EVENTS_SCHEMA_FILE.read_text()))
    cid = new_id()
    for field in ("id", "cid"):
        record = GOOD | {field: GOOD[field] + tail}
        assert not records.is_valid(record)
        assert not jsonschema_rs.validator_for(json.loads(SCHEMA_FILE.read_text())).is_valid(record)
        with pytest.raises(InvalidRecord):
            decode_record(orjson.dumps(record))
    event = {"v": 1, "type": "chat.read", "cid": cid + tail, "uid": 7, "seq": 3}
    assert not events.is_valid(event)
    with pytest.raises(ValueError):
        decode_event(orjson.dumps(event))


def test_the_schema_command_checks_without_writing() -> None:
    from contracts.__main__ import main

    assert main(["--check"]) == 0  # the published files are current
    with pytest.raises(SystemExit):
        main(["--help"])  # used to rewrite both files whatever its arguments


def test_a_record_nested_deeper_than_python_recurses_is_no_event() -> None:
    with pytest.raises(ValueError, match="nested too deep"):
        decode_event(b"[" * 1000 + b"]" * 1000)


def _reason(record: dict[str, Any]) -> str:
    with pytest.raises(InvalidRecord) as err:
        decode_record(orjson.dumps(record))
    return err.value.reason


@given(text=st.text(st.sampled_from([" ", "\t", "\n", "\x00", "\x1f", "\u3000", "a"]), min_size=1))
def test_a_refused_text_is_said_plainly_in_printable_characters(text: str) -> None:
    """A dead letter's reason is a header operators read: the pattern's own mismatch
    message quoted it whole, with a NUL, tabs and line breaks, for blank and NUL alike."""
    if acceptable_text(text):
        return
    reason = _reason({**GOOD, "text": text})
    assert reason.isprintable(), repr(reason)
    said = "contains a NUL" if "\x00" in text else "blank"
    assert reason.startswith("text: ") and said in reason, reason


@given(
    created=st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
)
def test_a_created_at_out_of_its_window_is_said_so(created: float) -> None:
    """A float of milliseconds was refused as "Input should be a valid integer"."""
    if CREATED_MIN <= created <= CREATED_SCHEMA_MAX:
        return
    reason = _reason({**GOOD, "createdAt": created})
    assert reason.startswith("createdAt: unix seconds between"), reason
    assert ("milliseconds?" in reason) == (
        CREATED_MIN * 1000 <= created <= CREATED_SCHEMA_MAX * 1000
    ), reason


@pytest.mark.parametrize("created", ["1700000000", True, None, [1], {"s": 1}])
def test_a_created_at_that_is_no_number_is_said_so(created: Any) -> None:
    reason = _reason({**GOOD, "createdAt": created})
    assert reason.startswith("createdAt: a number of unix seconds expected"), reason


_HELLO_SCHEMA = jsonschema.Draft202012Validator(Hello.model_json_schema())
_CID = "65f0c0ffee0000000000beef"


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "type": st.sampled_from(["hello", "Hello", "ready", 1]),
            "token": st.sampled_from(["", "t", "a.b.c"]) | st.integers(),
            "since": st.dictionaries(
                st.sampled_from([_CID, _CID.upper(), "abc", "", _CID + "\n"]),
                st.sampled_from([-1, 0, 1, 2**63 - 1, 2**63, 1.5, True, "1", None]),
                max_size=3,
            )
            | st.sampled_from([[], "x", None]),
        },
    )
)
@example({"type": "hello", "token": "t", "since": {_CID + "\n": 0}})  # passed by luck
def test_the_published_hello_takes_what_the_gateway_takes(hello: dict[str, Any]) -> None:
    """The Hello frame of the OpenAPI document required a token only: a client built
    from it sent hellos the gateway closed with 4000 (found in review)."""
    try:
        parse_hello(json.dumps(hello))
        taken = True
    except HelloProblem:
        taken = False
    assert _HELLO_SCHEMA.is_valid(hello) == taken, hello


def test_the_published_hello_bounds_since() -> None:
    schema = Hello.model_json_schema()["properties"]["since"]
    assert schema["maxProperties"] == SINCE_MAX and schema["additionalProperties"] is False
