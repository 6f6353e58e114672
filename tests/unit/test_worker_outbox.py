"""The worker's copies (dead letters, forwards) always fit in one request, whatever the
source record's size, headers or reason: a copy aiokafka refuses would be retried forever
and hold its partition."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from dialogue_worker.adapters.outbox import (
    FORWARD_HEADERS_DROPPED,
    HEADERS_DROPPED,
    KEY_TRUNCATED,
    MAX_RECORD,
    NULL_RECORD,
    REASON,
    SOURCE_TIMESTAMP,
    TRUNCATED,
    dead_letter_copy,
    forward_copy,
    record_size,
)
from dialogue_worker.domain.records import REASON_MAX, InboundRecord, Rejected, RejectKind
from dialogue_worker.entrypoints.agent import inbound
from tests.support.hostile import BROKER_LIMIT


def record(value: bytes, headers: tuple[tuple[str, bytes], ...] = ()) -> InboundRecord:
    return InboundRecord(
        topic="dialogue.messages",
        partition=3,
        offset=12345,
        key=b"k" * 24,
        value=value,
        headers=headers,
    )


def test_a_record_at_the_broker_limit_is_dead_lettered_cut_and_marked() -> None:
    source = record(b"x" * (BROKER_LIMIT - 100))
    _, value, headers = dead_letter_copy(Rejected(source, RejectKind.INVALID, "too long"))
    assert record_size(source.key, value, headers) <= MAX_RECORD
    assert dict(headers)[TRUNCATED] == str(BROKER_LIMIT - 100).encode()
    assert value is not None and source.value is not None
    assert source.value.startswith(value) and len(value) > MAX_RECORD - 1000


def test_a_small_record_is_copied_whole_with_its_headers() -> None:
    source = record(b'{"v": 2}', headers=(("trace", b"abc"),))
    _, value, headers = dead_letter_copy(Rejected(source, RejectKind.INVALID, "unsupported"))
    assert value == source.value
    assert headers[0] == ("trace", b"abc")
    assert TRUNCATED not in dict(headers)


def test_a_reason_quoting_a_huge_value_is_cut() -> None:
    rejected = Rejected(record(b"{}"), RejectKind.INVALID, "bad v: " + "9" * 50_000)
    assert len(rejected.reason) <= REASON_MAX + 30
    assert rejected.reason.endswith("more)")
    assert len(dict(dead_letter_copy(rejected)[2])[REASON]) < 1100


@given(
    value_size=st.integers(min_value=0, max_value=BROKER_LIMIT),
    header_sizes=st.lists(st.integers(min_value=0, max_value=400_000), max_size=4),
    key_size=st.one_of(st.integers(0, 64), st.integers(0, BROKER_LIMIT)),
)
def test_every_dead_letter_fits(value_size: int, header_sizes: list[int], key_size: int) -> None:
    headers = tuple((f"h{i}", b"h" * n) for i, n in enumerate(header_sizes))
    source = InboundRecord(
        topic="t",
        partition=0,
        offset=1,
        key=b"k" * key_size,
        value=b"v" * value_size,
        headers=headers,
    )
    key, value, out = dead_letter_copy(Rejected(source, RejectKind.INVALID, "reason"))
    assert record_size(key, value, out) <= MAX_RECORD
    assert dict(out)[REASON] == b"reason"
    # Nothing is cut that fitted: a cut key or value says so and how long it was.
    for part, whole, mark in ((key, source.key, KEY_TRUNCATED), (value, source.value, TRUNCATED)):
        if mark in dict(out):
            assert whole is not None and dict(out)[mark] == str(len(whole)).encode()
        else:
            assert part == whole
    # Source headers are kept whole, or all left out and counted: never silently.
    kept = [h for h in out if h[0].startswith("h")]
    assert kept in ([], list(headers))
    if headers and not kept:
        assert dict(out)[HEADERS_DROPPED] == str(len(headers)).encode()
    else:
        assert HEADERS_DROPPED not in dict(out)


@given(
    value_size=st.integers(min_value=0, max_value=4 * 4096 + 1024),  # what a valid record holds
    header_sizes=st.lists(st.integers(min_value=0, max_value=BROKER_LIMIT), max_size=4),
    key=st.one_of(st.none(), st.binary(max_size=64)),
)
def test_every_forward_fits_and_keeps_or_counts_the_source_headers(
    value_size: int, header_sizes: list[int], key: bytes | None
) -> None:
    headers = tuple((f"h{i}", b"h" * n) for i, n in enumerate(header_sizes))
    source = InboundRecord("t", 3, 1, key, b"v" * value_size, headers)
    out_key, value, out = forward_copy(source, "c" * 24)
    assert (out_key, value) == (b"c" * 24, source.value)
    assert record_size(out_key, value, out) <= MAX_RECORD
    kept = [h for h in out if h[0].startswith("h")]
    assert kept in ([], list(headers))
    assert out[len(kept)] == ("x-forwarded-from", b"t/3/1")
    if headers and not kept:
        assert out[len(kept) + 1 :] == [(FORWARD_HEADERS_DROPPED, str(len(headers)).encode())]
    else:
        assert len(out) == len(kept) + 1


def test_a_forward_drops_the_source_headers_that_would_not_fit_but_keeps_the_value() -> None:
    """And says how many it left out: a copy the owner dead-letters later showed no sign
    that its source had any (found in review)."""
    value = b'{"v":1}'
    source = InboundRecord(
        "dialogue.messages", 7, 99, None, value, (("big", b"h" * (MAX_RECORD - 50)),)
    )
    out_key, out_value, out_headers = forward_copy(source, "c" * 24)
    assert (out_key, out_value) == (b"c" * 24, value)
    assert out_headers == [
        ("x-forwarded-from", b"dialogue.messages/7/99"),
        (FORWARD_HEADERS_DROPPED, b"1"),
    ]
    assert record_size(out_key, out_value, out_headers) <= MAX_RECORD


def test_a_record_forwarded_again_names_one_place_it_was_read_and_keeps_the_older() -> None:
    """A second forward (a worker that counted the topic's partitions otherwise) or a
    forged header: the copy's only x-forwarded-from is where this worker read it."""
    source = InboundRecord(
        "dialogue.messages",
        7,
        99,
        b"wrong",
        b'{"v":1}',
        (("trace", b"t1"), ("x-forwarded-from", b"dialogue.messages/2/5")),
    )
    key, value, headers = forward_copy(source, "c" * 24)
    assert (key, value) == (b"c" * 24, b'{"v":1}')
    assert headers == [
        ("trace", b"t1"),
        ("prev-x-forwarded-from", b"dialogue.messages/2/5"),
        ("x-forwarded-from", b"dialogue.messages/7/99"),
    ]


def test_a_header_without_a_value_stays_without_one_from_kafka_to_the_dead_letter() -> None:
    """`inbound` made it b"", so the dead letter was not the record as it came."""
    message = SimpleNamespace(
        topic="t", partition=0, offset=5, key=b"k", value=b"{", headers=[("trace", None)]
    )
    source = inbound(SimpleNamespace(message=message))
    assert source.headers == (("trace", None),)
    _, _, headers = dead_letter_copy(Rejected(source, RejectKind.INVALID, "not JSON"))
    assert headers[0] == ("trace", None)


def test_a_record_without_key_and_value_is_copied_with_an_empty_value_and_marked() -> None:
    """Kafka (and aiokafka's send) refuse a record with neither; a producer outside the
    project can write one, and its dead letter must still be sendable."""
    source = InboundRecord("t", 0, 5, None, None, (("trace", None),))
    key, value, headers = dead_letter_copy(Rejected(source, RejectKind.INVALID, "empty value"))
    assert (key, value) == (None, b"")
    assert headers[0] == ("trace", None) and dict(headers)[NULL_RECORD] == b"1"
    tombstone = InboundRecord("t", 0, 6, b"cid", None)
    key, value, headers = dead_letter_copy(Rejected(tombstone, RejectKind.INVALID, "empty"))
    assert (key, value) == (b"cid", None) and NULL_RECORD not in dict(headers)


def test_a_dead_letter_names_when_its_source_was_written() -> None:
    source = InboundRecord("t", 0, 5, b"k", b"{", timestamp_ms=1_700_000_000_123)
    _, _, headers = dead_letter_copy(Rejected(source, RejectKind.INVALID, "malformed JSON"))
    assert dict(headers)[SOURCE_TIMESTAMP] == b"1700000000123"
    untimed = InboundRecord("t", 0, 6, b"k", b"{")
    assert SOURCE_TIMESTAMP not in dict(
        dead_letter_copy(Rejected(untimed, RejectKind.INVALID, "x"))[2]
    )


def test_a_faust_event_carries_its_timestamp_in_milliseconds() -> None:
    message = SimpleNamespace(
        topic="t", partition=1, offset=2, key=None, value=b"{}", headers=None, timestamp=1.5
    )
    assert inbound(SimpleNamespace(message=message)).timestamp_ms == 1500
    message.timestamp = None
    assert inbound(SimpleNamespace(message=message)).timestamp_ms is None
