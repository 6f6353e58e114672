"""The Kafka message record: the public, versioned value of `dialogue.messages`.

External producers write it too, so it is validated strictly on the consumer side;
contracts/schema/dialogue.messages.v1.json is generated from MessageRecord.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    field_validator,
)

TOPIC = "dialogue.messages"
TEXT_MAX = 4096  # characters
RECORD_MAX_BYTES = 64 * 1024  # the whole value, 65,536 bytes
#: The header of a record the consumer read in place of a batch it could not (one
#: decompressing past its bound, or corrupt): why (platform_common/kafka_records.py).
UNREADABLE_HEADER = "x-dialogue-unreadable"
#: Largest user id: MongoDB and BSON hold signed 64-bit integers.
UID_MAX = 2**63 - 1
#: Seqs are MongoDB int64s where they are stored.
INT64_MAX = 2**63 - 1
#: createdAt window: from 2001-01-01T00:00:00Z to one day past the consumer's clock. The
#: JSON Schema carries a fixed outer bound (2100-01-01); the model also checks "now + 1 day".
CREATED_MIN = 978_307_200
CREATED_SCHEMA_MAX = 4_102_444_800
FUTURE_SLACK = 86_400
#: Every character Python's str.isspace() calls whitespace, as the characters themselves
#: (a "-" between two is a range): the regex engines that read TEXT_PATTERN disagree on
#: `\s` (ECMA-262, which JSON Schema validators follow, counts U+FEFF and not U+0085 or
#: U+001C..U+001F; the worker's Rust engine counts U+0085), and Go's RE2 refuses `\uXXXX`
#: escapes, so the pattern names each character plainly (JSON writes them as escapes).
WHITESPACE = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: Non-blank, and no NUL: neither BSON keys nor PostgreSQL's jsonb (FerretDB) hold one.
TEXT_PATTERN = f"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"

#: A JSON number written as a float (`7.0`) is read as a double, which holds every integer
#: below 2**53 exactly; from 2**53 on one double stands for several (2**53 + 1 reads as
#: 2**53), so such a float names no one integer.
_EXACT_FLOAT = 2**53
#: The published schema's description: what its keywords cannot say, said to producers.
RECORD_DESCRIPTION = (
    "One chat message as produced to `dialogue.messages` (key = cid): a UTF-8 JSON object "
    f"of at most {RECORD_MAX_BYTES:,} bytes (64 KiB) whose strings are valid Unicode "
    "(no unpaired surrogate escape such as \\ud800). An integer written as a float "
    f"(`7.0`) is taken below {_EXACT_FLOAT:,} (2^53) only: from there on one float stands "
    "for several integers, so `uid` must be written without a fraction."
)
#: A `\uXXXX` escape of a UTF-16 surrogate (U+D800..U+DFFF), the half of a pair.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def json_int(value: object) -> int | None:
    """An integer from decoded JSON: an int, or a float with an integral value below
    2**53 (`42.0`, which JSON Schema's "integer" includes); None for anything else (bool,
    strings, 42.5, 2.0**53, nan, 1e300)."""
    if type(value) is int:  # bool is an int subclass and is refused here
        return value
    if type(value) is float and value.is_integer() and abs(value) < _EXACT_FLOAT:
        return int(value)
    return None


def integral(value: object) -> object:
    """An integer as JSON Schema reads it: `7.0` is 7 (a Python producer's json.dumps(7.0)
    writes that); anything else is left for the strict check."""
    whole = json_int(value)
    return value if whole is None else whole


#: The lengths as well as the pattern: Python's `re` (and so the `jsonschema` library)
#: lets `$` match before a final newline, which would pass "<24 hex>\n".
ObjectIdHex = Annotated[
    str,
    Field(pattern=r"^[0-9a-f]{24}$", min_length=24, max_length=24, description="ObjectId, 24 hex"),
]


def _seconds_in_range(value: object) -> object:
    """Not a number, or one outside the window, is refused saying so (the union below
    names only its first branch's complaint: a float of milliseconds read "Input should
    be a valid integer"); the union checks the rest."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"a number of unix seconds expected, got {_shown(value)}")
    if not CREATED_MIN <= value <= CREATED_SCHEMA_MAX:  # nan fails it too
        milliseconds = CREATED_MIN * 1000 <= value <= CREATED_SCHEMA_MAX * 1000
        raise ValueError(
            f"unix seconds between {CREATED_MIN} and {CREATED_SCHEMA_MAX} expected, "
            f"got {_shown(value)}{' (milliseconds?)' if milliseconds else ''}"
        )
    return value


UnixSeconds = Annotated[
    Annotated[StrictInt, Field(ge=CREATED_MIN, le=CREATED_SCHEMA_MAX)]
    | Annotated[float, Field(ge=CREATED_MIN, le=CREATED_SCHEMA_MAX, allow_inf_nan=False)],
    BeforeValidator(_seconds_in_range),
]


def _text_problem(text: str) -> str:
    """The rule of TEXT_PATTERN, said plainly: its own mismatch message quotes the whole
    pattern, control characters and a NUL included, into a dead letter's header."""
    if "\x00" in text:
        raise ValueError("text contains a NUL character (U+0000)")
    if text.isspace():
        raise ValueError("text is blank (whitespace only)")
    return text


class MessageRecord(BaseModel):
    """One chat message as produced to `dialogue.messages` (key = cid)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="dialogue.messages record v1",
        strict=True,
        json_schema_extra={"description": RECORD_DESCRIPTION},
    )

    v: Literal[1] = Field(description="schema version")
    id: ObjectIdHex = Field(description="message id; becomes the MongoDB _id")
    cid: ObjectIdHex = Field(description="chat id; also the record key")
    uid: Annotated[
        StrictInt,
        Field(ge=1, le=UID_MAX, description="author's user id"),
        BeforeValidator(integral),
    ]
    text: Annotated[
        str,
        Field(
            min_length=1,
            max_length=TEXT_MAX,
            json_schema_extra={"pattern": TEXT_PATTERN},
            description=(
                "message text: 1-4096 characters, not blank, no NUL, valid Unicode "
                "(no unpaired surrogate escape such as \\ud800)"
            ),
        ),
        AfterValidator(_text_problem),
    ]
    createdAt: UnixSeconds = Field(
        description="unix time in seconds, 2001-01-01 .. one day past the consumer's clock"
    )

    @field_validator("createdAt")
    @classmethod
    def _not_in_the_future(cls, value: float) -> float:
        if value > time.time() + FUTURE_SLACK:
            raise ValueError("createdAt is more than one day in the future")
        return value

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump())

    def key(self) -> bytes:
        return self.cid.encode()


def acceptable_text(text: str) -> bool:
    """What a record's text may be (the gateway refuses the rest before producing): the
    rule of TEXT_PATTERN without a regex, whose backtracking costs O(n²) on a long text
    that ends in a NUL."""
    return 0 < len(text) <= TEXT_MAX and "\x00" not in text and not text.isspace()


class InvalidRecord(ValueError):
    """A record that cannot be accepted; reason is a short machine-friendly text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _shown(value: object) -> str:
    """A producer's value in a dead letter's reason: a short scalar as it is, anything
    else by its type (the repr of a list nested 1,000 deep raises RecursionError)."""
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)[:40]
    if isinstance(value, str):
        return repr(value[:40])
    return f"a JSON {'array' if isinstance(value, list) else 'object'}"


def _json_problem(exc: orjson.JSONDecodeError) -> str:
    """Why orjson refused a value. An unpaired surrogate escape (`\\ud800`, which Python's
    json.dumps writes for a lone surrogate) is valid JSON grammar and passes the published
    schema's validators, so orjson's "no low surrogate" under "malformed JSON" misleads:
    the escape is named instead, as the character it is not."""
    escape = _SURROGATE_ESCAPE.match(exc.doc, exc.pos)
    if escape is None or "surrogate" not in exc.msg:
        return f"malformed JSON: {exc}"
    return (
        f"a string holds an unpaired surrogate escape ({escape.group()} at character offset "
        f"{exc.pos}), which is not a Unicode character"
    )


def decode_record(value: bytes | None) -> MessageRecord:
    """Parse and validate a raw Kafka value, or raise InvalidRecord with the reason."""
    if value is None:
        raise InvalidRecord("empty value")
    if len(value) > RECORD_MAX_BYTES:
        raise InvalidRecord(f"record larger than {RECORD_MAX_BYTES} bytes")
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(_json_problem(exc)) from None
    if not isinstance(data, dict):
        raise InvalidRecord("record is not a JSON object")
    version = data.get("v")
    if isinstance(version, bool) or version != 1:  # true == 1 in Python, not in the schema
        raise InvalidRecord(f"unsupported schema version: {_shown(version)}")
    try:
        return MessageRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidRecord(f"{where}: {message}") from None
