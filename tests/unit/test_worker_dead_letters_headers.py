"""What a dead letter's headers say is the worker's own and true: a source's x-dlq-*
headers (a replayed dead letter, or forged ones) are renamed out of the worker's prefix,
a cut key or value is cut no more than needed and says so, and an unpaired surrogate
escape is named as such in the reason rather than as malformed JSON."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

import jsonschema
from hypothesis import assume, given
from hypothesis import strategies as st

from contracts.__main__ import SCHEMA_FILE
from contracts.records import RECORD_MAX_BYTES, InvalidRecord, decode_record
from dialogue_worker.adapters.outbox import (
    DLQ_PREFIX,
    HEADERS_DROPPED,
    KEY_TRUNCATED,
    KIND,
    MAX_RECORD,
    PREVIOUS,
    REASON,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    TRUNCATED,
    Headers,
    dead_letter_copy,
    record_size,
)
from dialogue_worker.domain.records import InboundRecord, Rejected, RejectKind, decode_all
from tests.support.hostile import BROKER_LIMIT
from tests.unit.test_contracts import GOOD

#: The least a cut copy takes of MAX_RECORD: all but the 4 bytes the outbox keeps for the
#: key's and value's lengths, which short ones do not use.
USED_ROOM = MAX_RECORD - 4


def dead_letter(
    key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]] = ()
) -> tuple[bytes | None, bytes | None, Headers]:
    source = InboundRecord("dialogue.messages", 3, 12345, key, value, tuple(headers))
    return dead_letter_copy(Rejected(source, RejectKind.INVALID, "the worker's reason"))


def dlq_names(headers: Headers) -> Counter[str]:
    return Counter(name for name, _ in headers if name.startswith(DLQ_PREFIX))


def test_forged_x_dlq_headers_are_renamed_and_the_workers_are_there_once() -> None:
    forged: Headers = [
        (REASON, b"forged"),
        ("trace", b"abc"),
        (TRUNCATED, b"999999"),
        (SOURCE_OFFSET, b"1"),
    ]
    key, value, out = dead_letter(b"k" * 24, b"{", forged)
    assert (key, value) == (b"k" * 24, b"{")  # small: not cut
    assert all(n == 1 for n in dlq_names(out).values())
    assert TRUNCATED not in dict(out)  # the forged one is not taken for the worker's
    assert dict(out)[REASON] == b"the worker's reason"
    assert dict(out)[SOURCE_OFFSET] == b"12345"
    assert out[:4] == [
        (PREVIOUS + REASON, b"forged"),
        ("trace", b"abc"),
        (PREVIOUS + TRUNCATED, b"999999"),
        (PREVIOUS + SOURCE_OFFSET, b"1"),
    ]


def test_a_dead_letter_replayed_twice_keeps_its_reasons_oldest_first() -> None:
    _, _, first = dead_letter(b"k", b"{")
    _, _, second = dead_letter(b"k", b"{", [(n, v.replace(b"worker", b"1st")) for n, v in first])
    _, _, third = dead_letter(b"k", b"{", second)
    assert all(n == 1 for n in dlq_names(third).values())
    previous = [v for n, v in third if n == PREVIOUS + REASON]
    assert previous == [b"the 1st's reason", b"the worker's reason"]


header_names = st.one_of(
    st.sampled_from([REASON, KIND, SOURCE_TOPIC, TRUNCATED, KEY_TRUNCATED, HEADERS_DROPPED]),
    st.text(max_size=8).map(lambda rest: DLQ_PREFIX + rest),
    st.sampled_from([PREVIOUS + REASON, "X-DLQ-reason", "x-dlq", "trace"]),
    st.text(max_size=8),
)
header_values = st.one_of(
    st.none(),
    st.binary(max_size=16),
    st.integers(0, 600_000).map(lambda n: b"h" * n),  # big enough to be dropped
)


@given(
    headers=st.lists(st.tuples(header_names, header_values), max_size=6),
    key_size=st.one_of(st.integers(0, 64), st.integers(0, BROKER_LIMIT)),
    value_size=st.one_of(st.none(), st.integers(0, BROKER_LIMIT)),
)
def test_every_x_dlq_header_of_a_dead_letter_is_the_workers_and_there_once(
    headers: Headers, key_size: int, value_size: int | None
) -> None:
    value = None if value_size is None else b"v" * value_size
    key, value, out = dead_letter(b"k" * key_size, value, headers)
    assert record_size(key, value, out) <= MAX_RECORD
    assert all(n == 1 for n in dlq_names(out).values()), out
    assert (dict(out)[REASON], dict(out)[SOURCE_PARTITION]) == (b"the worker's reason", b"3")
    # The source's headers, renamed, are kept whole and in order, or left out and counted.
    renamed = [(PREVIOUS + n if n.startswith(DLQ_PREFIX) else n, v) for n, v in headers]
    kept = out[: len(out) - sum(dlq_names(out).values())]
    assert kept in ([], renamed)
    if headers and not kept:
        assert dict(out)[HEADERS_DROPPED] == str(len(headers)).encode()


def test_a_big_key_with_a_null_value_keeps_all_that_fits_and_says_it_was_cut() -> None:
    key, value, out = dead_letter(b"k" * 1_048_500, None)
    assert value is None and key is not None
    assert len(key) > 1_000_000
    assert dict(out)[KEY_TRUNCATED] == b"1048500"
    assert TRUNCATED not in dict(out)  # no value byte was lost
    assert USED_ROOM <= record_size(key, value, out) <= MAX_RECORD


def test_a_big_key_with_a_tiny_value_leaves_the_value_whole() -> None:
    key, value, out = dead_letter(b"k" * 1_048_500, b"{}")
    assert value == b"{}" and key is not None and len(key) > 1_000_000
    assert dict(out)[KEY_TRUNCATED] == b"1048500" and TRUNCATED not in dict(out)
    assert record_size(key, value, out) <= MAX_RECORD


@given(
    key_size=st.one_of(st.none(), st.integers(0, BROKER_LIMIT)),
    value_size=st.one_of(st.none(), st.integers(0, BROKER_LIMIT)),
)
def test_a_cut_takes_from_each_only_what_the_other_cannot_give(
    key_size: int | None, value_size: int | None
) -> None:
    assume(key_size is not None or value_size is not None)  # a null record: its own test
    source_key = None if key_size is None else b"k" * key_size
    source_value = None if value_size is None else b"v" * value_size
    key, value, out = dead_letter(source_key, source_value)
    assert record_size(key, value, out) <= MAX_RECORD
    cut = {}
    for part, whole, mark in ((key, source_key, KEY_TRUNCATED), (value, source_value, TRUNCATED)):
        assert (part is None) == (whole is None)
        cut[mark] = part != whole
        if cut[mark]:
            assert part is not None and whole is not None and whole.startswith(part)
            assert dict(out)[mark] == str(len(whole)).encode()
        else:
            assert mark not in dict(out)
    if any(cut.values()):  # nothing left unused that could have been kept
        assert record_size(key, value, out) >= USED_ROOM
    if all(cut.values()):  # neither could spare room: halves
        assert key is not None and value is not None and abs(len(key) - len(value)) <= 1


def test_an_unpaired_surrogate_escape_is_named_in_the_reason() -> None:
    """Python's json.dumps writes a lone surrogate as the escape, valid JSON grammar that
    the published schema's validators accept: "malformed JSON" was the wrong reason."""
    value = json.dumps({**GOOD, "text": "bad \ud800 half"}).encode()
    schema = json.loads(SCHEMA_FILE.read_text())
    assert jsonschema.Draft202012Validator(schema).is_valid(json.loads(value))
    source = InboundRecord("dialogue.messages", 0, 1, b"k", value)
    [rejected] = decode_all([source]).rejected
    reason = dict(dead_letter_copy(rejected)[2])[REASON].decode()
    at = value.decode().index("\\ud800")
    assert reason == (
        f"a string holds an unpaired surrogate escape (\\ud800 at character offset {at}), "
        "which is not a Unicode character"
    )


@given(
    surrogate=st.integers(0xD800, 0xDFFF),
    before=st.text(max_size=8),
    after=st.text(max_size=8),
)
def test_every_unpaired_surrogate_is_named_by_its_escape(
    surrogate: int, before: str, after: str
) -> None:
    text = before + chr(surrogate) + after  # st.text() draws no surrogate to pair it with
    try:
        decode_record(json.dumps({**GOOD, "text": text}).encode())
    except InvalidRecord as exc:
        assert f"unpaired surrogate escape (\\u{surrogate:04x} at character offset " in exc.reason
    else:
        raise AssertionError("a record with an unpaired surrogate was accepted")


def test_json_that_is_really_malformed_is_still_said_to_be() -> None:
    for value in (b'{"text": "\\ud800\\u"}', '{"text": "\ud800"}'.encode(errors="surrogatepass")):
        try:
            decode_record(value)
        except InvalidRecord as exc:
            assert exc.reason.startswith("malformed JSON: "), exc.reason
        else:
            raise AssertionError(f"{value!r} was accepted")


def test_the_schema_tells_producers_what_its_keywords_cannot_check() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert f"at most {RECORD_MAX_BYTES:,} bytes (64 KiB)" in schema["description"]
    for description in (schema["description"], schema["properties"]["text"]["description"]):
        assert "valid Unicode (no unpaired surrogate escape such as \\ud800)" in description
