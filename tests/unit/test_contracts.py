"""The shared record model, its published JSON Schema and the error codes."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import orjson
import pytest

from contracts.__main__ import SCHEMA_FILE, schema_text
from contracts.errors import ErrorCode, error_body
from contracts.records import TEXT_MAX, InvalidRecord, MessageRecord, decode_record

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
