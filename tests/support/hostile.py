"""Kafka record values at and past every bound of the v1 record, as raw JSON bytes.

A hand-rolled JSON writer, because the interesting inputs are the ones a JSON library
will not write: integers past 64 bits, NaN and Infinity tokens, duplicate keys, lone
surrogate escapes. Used by the property test of the worker's decode path, the
hostile-records fault scenario and the `make dev` burst test, so all exercise the same
classes of input; `expected_kind`, `dead_letters` and `LIKE_JAVA` serve their checks.
`bounded_values` gives values at the value's outer bounds (its size, what follows its
object, its UTF-8, none at all), each with the fate the contract gives it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from hypothesis import strategies as st

from contracts.records import RECORD_MAX_BYTES, TEXT_MAX, InvalidRecord, decode_record
from tests.support.waiting import NeverHappened, eventually

#: The broker's default message.max.bytes: the largest record another producer may write.
BROKER_LIMIT = 1_048_588
#: Integers around every width a producer or a store might use.
EDGE_INTS: list[int] = sorted(
    {
        sign * (2**bits) + delta
        for bits in (31, 32, 53, 63, 64)
        for sign in (1, -1)
        for delta in (-1, 0, 1)
    }
    | {0, 1, -1, 10**30, -(10**30)}
)
#: Floats a JSON token can spell (NaN and Infinity are not JSON, but producers send them).
EDGE_FLOATS: list[float] = [
    float("inf"),
    float("-inf"),
    float("nan"),
    1e308,
    -1e308,
    5e-324,
    -0.0,
    0.0,
    1.5,
    1_700_000_000.25,
]
#: Texts at the edges of what a message may hold.
EDGE_TEXTS: list[str] = [
    "nul \x00 inside",
    "\x00",
    "lone \ud800 surrogate",
    "\udfff",
    "four-byte \U0001f600\U0010fffd",
    "rtl \u202eevil\u202c",
    "zero\u200bwidth",
    "\ufeffbom",
    " \t\n ",
    "x" * 4096,
    "x" * 4097,
    "\U0001f600" * 4096,
    "y" * 200_000,
    "",
    "ok",
]

Pairs = Sequence[tuple[str, Any]]


class Raw:
    """A JSON fragment written as is (a number no JSON library would emit, say)."""

    def __init__(self, token: str) -> None:
        self.token = token


def write(value: Any) -> str:
    """JSON text for value; dict-like pairs keep duplicate keys, Raw is written as is."""
    if isinstance(value, Raw):
        return value.token
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)  # lone surrogates become \udXXX escapes
    if isinstance(value, dict):
        return write(list(value.items()))
    if (
        isinstance(value, list)
        and value
        and all(isinstance(p, tuple) and len(p) == 2 for p in value)
    ):
        return "{" + ",".join(f"{write(k)}:{write(v)}" for k, v in value) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(write(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__}")


def encode(pairs: Pairs | dict[str, Any]) -> bytes:
    """Raw UTF-8 bytes of the JSON object; lone surrogates stay escaped, so it is valid UTF-8."""
    return write(pairs if isinstance(pairs, list) else list(pairs.items())).encode()


def base(cid: str, uid: int, text: str = "ok") -> dict[str, Any]:
    return {
        "v": 1,
        "id": new_hex(),
        "cid": cid,
        "uid": uid,
        "text": text,
        "createdAt": int(time.time()),
    }


_counter = iter(range(1, 1 << 62))


def new_hex() -> str:
    """A fresh lowercase ObjectId-shaped id (unique within the process)."""
    return f"{int(time.time()):08x}{next(_counter):016x}"


def edge_values(cid: str, uid: int) -> list[bytes]:
    """One record value per edge of every field, plus structural edges (deterministic)."""
    out: list[bytes] = []
    for n in EDGE_INTS:
        out.append(encode(base(cid, uid) | {"uid": n}))
        out.append(encode(base(cid, uid) | {"createdAt": n}))
        out.append(encode(base(cid, uid) | {"v": n}))
    for f in EDGE_FLOATS:
        out.append(encode(base(cid, uid) | {"createdAt": f}))
        out.append(encode(base(cid, uid) | {"uid": f}))
    for text in EDGE_TEXTS:
        out.append(encode(base(cid, uid, text)))
    good = base(cid, uid)
    out += [
        encode(good | {"extra": 1}),
        encode(good | {"nested": {"a": [1, {"b": None}]}}),
        encode(good | {"text": {"$gt": ""}}),  # an operator where a string belongs
        encode(good | {"id": good["id"].upper()}),  # wrong-case hex
        encode(good | {"cid": cid.upper()}),
        encode([*base(cid, uid).items(), ("uid", 2**64)]),  # duplicate key, last one bad
        encode([("uid", 2**64), *base(cid, uid).items()]),  # duplicate key, last one good
        encode([*base(cid, uid).items(), ("text", "second")]),
        encode(good | {"createdAt": Raw("1e999")}),
        encode(good | {"uid": Raw("7.0")}),
        encode(good | {"uid": Raw("-0")}),
        b'{"v":1,' * 2000,  # deep garbage
        b"[" * 10_000 + b"]" * 10_000,  # deep nesting
        b"\xef\xbb\xbf" + encode(base(cid, uid)),  # a byte order mark before the object
        encode(good | {"v": True}),  # true == 1 in Python; the schema wants an integer
    ]
    # Nested as deep as a JSON parser takes (orjson: 1,024 levels, the record's own
    # object included) in every field: the repr of such a value raises RecursionError.
    for name in (*good, "extra"):
        for depth in (1_000, 1_022):
            out.append(encode(good | {name: Raw("[" * depth + "]" * depth)}))
            out.append(encode(good | {name: Raw('{"a":' * depth + "1" + "}" * depth)}))
    return out


# --- Values at the record's outer bounds, each with its fate ---------------------------

#: The whitespace JSON allows around any token (RFC 8259 `ws`).
JSON_WHITESPACE = " \t\n\r"
#: Whitespace to Unicode (or to Python's str.isspace) that JSON does not allow between
#: tokens, as UTF-8; and a byte order mark, which is no whitespace at all.
OTHER_WHITESPACE: list[bytes] = [
    b"\x0b",
    b"\x0c",
    b"\x1c",
    b"\xc2\x85",
    b"\xc2\xa0",
    b"\xe3\x80\x80",
    b"\xef\xbb\xbf",
]
#: Byte sequences that are not UTF-8 wherever they stand between whole characters: a
#: surrogate's encoding (CESU-8, what Java's modified UTF-8 writes), bytes UTF-8 never
#: uses, a lone continuation byte, an overlong "/", a lead byte cut short, a code point
#: past U+10FFFF, the five-byte form of the original UTF-8.
NOT_UTF8: list[bytes] = [
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xed\xa0\xbd\xed\xb8\x80",
    b"\xff",
    b"\xfe",
    b"\x80",
    b"\xc0\xaf",
    b"\xc3",
    b"\xe2\x82",
    b"\xf4\x90\x80\x80",
    b"\xf8\x88\x80\x80\x80",
]
#: Words the dead letter's reason holds for each way a value past these bounds fails.
MALFORMED = "malformed JSON"
NOT_UNICODE = "not valid UTF-8"
TOO_LARGE = f"larger than {RECORD_MAX_BYTES} bytes"
EMPTY = "empty value"
#: A value with its fate: None, stored; else words its dead letter's reason holds
#: (dead-lettered as `invalid`).
Bounded = tuple[bytes | None, str | None]


def valid_texts() -> st.SearchStrategy[str]:
    """Texts the contract takes: 1 to TEXT_MAX characters, no NUL, not all whitespace
    (str.isspace, as the contract defines blank); the longest ones favoured."""
    longest = st.sampled_from(["x" * TEXT_MAX, "\U0001f600" * TEXT_MAX, "\u00e9" * TEXT_MAX])
    # Surrogates excluded by name: `characters` with any argument given includes them.
    letters = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
    short = st.text(letters, min_size=1, max_size=40)
    return longest | short.filter(lambda text: not text.isspace())


def padded(value: bytes, size: int, at: int) -> bytes:
    """`value` with JSON whitespace inserted at byte `at` until it is `size` bytes long."""
    fill = (JSON_WHITESPACE * (size // len(JSON_WHITESPACE) + 1))[: size - len(value)]
    return value[:at] + fill.encode() + value[at:]


def bounded_values(cid: str, uid: int) -> st.SearchStrategy[Bounded]:
    """Values at the outer bounds of the record's value, each with its fate: valid records
    padded with JSON whitespace to one byte below, at and past RECORD_MAX_BYTES (kept up
    to it, refused for size past it: a larger value is refused unread, whatever it holds);
    followed by JSON whitespace (kept) or by anything else: other whitespace, garbage, a
    second record or JSON value, with or without a separator (malformed); with bytes that
    are not UTF-8 in the text (not UTF-8); None, a tombstone (empty)."""
    good = st.builds(lambda text: encode(base(cid, uid, text)), valid_texts())
    gaps = st.text(st.sampled_from(JSON_WHITESPACE), max_size=3).map(str.encode)

    @st.composite
    def sized(draw: st.DrawFn) -> Bounded:
        value = draw(good)
        size = RECORD_MAX_BYTES + draw(st.sampled_from([-1, 0, 1]))
        # After the opening brace, before the closing one, or after the object.
        at = draw(st.sampled_from([1, len(value) - 1, len(value)]))
        return padded(value, size, at), None if size <= RECORD_MAX_BYTES else TOO_LARGE

    @st.composite
    def followed(draw: st.DrawFn) -> Bounded:
        value, gap = draw(good), draw(gaps)
        kind = draw(st.sampled_from(["whitespace", "other", "garbage", "record", "json"]))
        if kind == "whitespace":
            return value + gap + draw(gaps.filter(bool)), None
        if kind == "other":
            tail = draw(st.sampled_from(OTHER_WHITESPACE))
        elif kind == "garbage":
            starts = st.binary(min_size=1, max_size=16)
            tail = draw(starts.filter(lambda b: b[:1] not in JSON_WHITESPACE.encode()))
        elif kind == "record":
            tail = draw(good)
        else:
            tail = write(draw(json_values(4))).encode()
        whole = value + gap + tail
        return whole, MALFORMED if len(whole) <= RECORD_MAX_BYTES else TOO_LARGE  # size first

    @st.composite
    def not_utf8(draw: st.DrawFn) -> Bounded:
        head, tail = draw(st.text(max_size=8)), draw(st.text(max_size=8))
        # The text's JSON string written by hand around the bad bytes (no library writes
        # them), in place of a stand-in text (a NUL, escaped: no other field holds one).
        string = (
            json.dumps(head, ensure_ascii=False).encode()[:-1]
            + draw(st.sampled_from(NOT_UTF8))
            + json.dumps(tail, ensure_ascii=False).encode()[1:]
        )
        value = encode(base(cid, uid, "\x00")).replace(write("\x00").encode(), string)
        return value, NOT_UNICODE

    return st.one_of(sized(), followed(), not_utf8(), st.just((None, EMPTY)))


def values(cid: str, uid: int) -> st.SearchStrategy[bytes | None]:
    """Generated record values: a valid record with fields swapped for edge values, the
    edge values, the values at the outer bounds (`bounded_values`) and any short bytes."""
    ints = st.sampled_from(EDGE_INTS) | st.integers()
    numbers = ints | st.sampled_from(EDGE_FLOATS) | st.floats()
    texts = st.sampled_from(EDGE_TEXTS) | st.text() | st.text(alphabet=st.characters())
    anything = st.recursive(
        st.none() | st.booleans() | numbers | texts,
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=6,
    )
    field_values = {
        "v": st.just(1) | numbers | anything,
        "id": st.just(None) | texts | st.from_regex(r"\A[0-9a-fA-F]{24}\Z") | anything,
        "cid": st.just(cid) | texts | anything,
        "uid": st.just(uid) | numbers | anything,
        "text": texts | anything,
        "createdAt": st.just(int(time.time())) | numbers | anything,
    }

    @st.composite
    def record(draw: st.DrawFn) -> bytes:
        pairs = list(base(cid, uid).items())
        for name in draw(st.sets(st.sampled_from(sorted(field_values)), max_size=3)):
            pairs = [(k, v) for k, v in pairs if k != name]
            if draw(st.booleans()):  # replaced, or (sometimes) dropped
                pairs.append((name, draw(field_values[name])))
        if draw(st.booleans()):
            pairs.append((draw(st.text(max_size=8)), draw(anything)))  # extra or duplicate key
        return encode(draw(st.permutations(pairs)))

    return (
        record()
        | st.sampled_from(edge_values(cid, uid))
        | bounded_values(cid, uid).map(lambda case: case[0])
        | st.binary(max_size=64)
    )


def expected_kind(value: bytes, members: set[int]) -> str | None:
    """What the worker must do with an edge value: None = store it, else the DLQ kind."""
    try:
        record = decode_record(value)
    except InvalidRecord:
        return "invalid"
    return None if record.uid in members else "not_member"


#: librdkafka keyed like Kafka's Java client (murmur2), idempotent, acks from all.
LIKE_JAVA = {
    "partitioner": "murmur2_random",
    "acks": "all",
    "enable.idempotence": True,
    "message.max.bytes": 1_000_000,
}


async def dead_letters(
    bootstrap: str, topic: str, wanted: set[bytes], within: float
) -> dict[bytes, dict[str, str]]:
    """Read the DLQ from the start until every wanted value is there (bounded)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: dict[bytes, dict[str, str]] = {}

    async def read_more() -> set[bytes]:
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            for r in records:
                found[r.value or b""] = {k: v.decode(errors="replace") for k, v in r.headers}
        return set(found)

    try:
        with contextlib.suppress(NeverHappened):  # the test's assertions name what is missing
            await eventually(read_more, lambda seen: wanted <= seen, within=within, every=0)
    finally:
        await consumer.stop()
    return found


# --- Request bodies of the HTTP APIs (the gateway's and the worker's property tests) --

#: JSON tokens no library writes but a client may send: past a double, minus zero, NaN
#: and Infinity, integral floats, 400 digits, lone surrogate and NUL escapes.
RAW_TOKENS: list[Raw] = [
    Raw(token)
    for token in (
        "1e999",
        "-1e999",
        "1e-999",
        "-0",
        "-0.0",
        "NaN",
        "Infinity",
        "7.0",
        "4.2e1",
        "1" * 400,
        '"\\ud800"',
        '"\\udfff tail"',
        '"\\u0000"',
    )
]
#: EDGE_TEXTS that fit a request body (the 200,000 character one never does).
BODY_TEXTS = [text for text in EDGE_TEXTS if len(text) <= 4097]


def nested(depth: int, kind: str = "list") -> Raw:
    """A value `depth` levels deep: `[[...]]`, or `{"a":{"a":...1}}` for kind "object"."""
    if kind == "list":
        return Raw("[" * depth + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


def json_scalars() -> st.SearchStrategy[Any]:
    """JSON scalars, their edges favoured: every bound of EDGE_INTS and EDGE_FLOATS,
    BODY_TEXTS, RAW_TOKENS, and any number or short text."""
    return (
        st.none()
        | st.booleans()
        | st.sampled_from(EDGE_INTS)
        | st.integers()
        | st.sampled_from(EDGE_FLOATS)
        | st.floats()
        | st.sampled_from(BODY_TEXTS)
        | st.text(max_size=20)
        | st.sampled_from(RAW_TOKENS)
    )


def json_objects(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """JSON objects as `write` takes them (pairs, so a key may repeat), `{}` among them."""
    pairs = st.lists(st.tuples(st.text(max_size=6), values), min_size=1, max_size=3)
    return st.just(Raw("{}")) | pairs


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any JSON value `write` takes: edge scalars in lists and objects."""
    return st.recursive(
        json_scalars(),
        lambda inner: st.lists(inner, max_size=3) | json_objects(inner),
        max_leaves=max_leaves,
    )


@st.composite
def json_bodies(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> bytes:
    """A request body: mostly a JSON object whose named fields are each absent, given
    once or repeated, with values drawn from `fields`, beside other keys in any order;
    else any JSON value, nothing, or bytes that are not JSON."""
    kind = draw(st.sampled_from(["object"] * 6 + ["value", "empty", "bytes"]))
    if kind == "value":
        return write(draw(json_values())).encode()
    if kind == "empty":
        return b""
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    pairs: list[tuple[str, Any]] = []
    for name, values in fields.items():
        pairs += [(name, draw(values)) for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2])))]
    pairs += draw(st.lists(st.tuples(st.text(max_size=6), json_values(4)), max_size=2))
    return write(draw(st.permutations(pairs))).encode() if pairs else b"{}"


#: Values as deep as orjson takes inside a body's object (1,024 levels in all), and one
#: level deeper.
DEEP_VALUES = [nested(1_022), nested(1_022, "object"), nested(1_023)]
#: User ids at and past their bounds. Nested no deeper than 512 levels: a user id nested
#: ~980 or more is a known 5000 (its refusal's repr recurses) that no hypothesis example
#: can show, as hypothesis raises the recursion limit by 2,000 while an example runs.
EDGE_USER_IDS: list[Any] = [
    0,
    -1,
    2**63 - 1,
    2**63,
    2**53 + 1,
    nested(2),
    nested(512),
    nested(512, "object"),
]


def either(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value of `good` half the time (`good | bad` weighs each branch of `bad` as much
    as `good`)."""
    return st.booleans().flatmap(lambda ok: good if ok else bad)


def user_id_lists(members: Sequence[int]) -> st.SearchStrategy[Any]:
    """The `users` of a chat body: some of `members` half the time, else lists of edge
    ids (EDGE_USER_IDS, json_scalars), lists longer than a request may name (1,001), or
    any JSON value."""
    edges = st.lists(either(st.sampled_from(EDGE_USER_IDS), json_scalars()), max_size=5)
    too_many = st.sampled_from([list(range(1, 1_002)), [members[0]] * 1_000])
    return either(
        st.lists(st.sampled_from(members), min_size=1, max_size=4),
        either(edges, json_values() | too_many),
    )


def read_seqs() -> st.SearchStrategy[Any]:
    """The `seq` of a read-marker body: any seq half the time, else any JSON value."""
    return either(
        st.integers(0, 2**63 - 1), json_scalars() | json_values() | st.sampled_from(DEEP_VALUES)
    )


def message_texts() -> st.SearchStrategy[Any]:
    """The `txt` of a message: any short text half the time, else any JSON value."""
    return either(
        st.text(min_size=1, max_size=50),
        json_scalars() | json_values() | st.sampled_from(DEEP_VALUES),
    )
