"""Property: every record value, at and past every bound, ends stored sanely or
dead-lettered with a reason; decoding, sorting and encoding never raise. Values at the
value's outer bounds (size, what follows the object, UTF-8, a tombstone) meet the fate
the contract gives each."""

from __future__ import annotations

import json
import time

import bson
import pytest
from hypothesis import HealthCheck, given, settings

from contracts.records import (
    CREATED_MIN,
    FUTURE_SLACK,
    RECORD_MAX_BYTES,
    TEXT_MAX,
    UID_MAX,
    UNREADABLE_HEADER,
)
from dialogue_worker.adapters.mongo import history_doc, unstorable
from dialogue_worker.domain import records as records_module
from dialogue_worker.domain.records import (
    InboundRecord,
    RejectKind,
    Sorted,
    check_storable,
    decode_all,
)
from dialogue_worker.services.ports import StoredMessage
from tests.support.hostile import (
    TOO_LARGE,
    Bounded,
    base,
    bounded_values,
    edge_values,
    encode,
    padded,
    values,
)

CID = "65f0c0ffee0000000000beef"
UID = 7


def sort_one(value: bytes | None) -> Sorted:
    """A one-record batch of `value`, decoded and checked as the store would hold it."""
    record = InboundRecord("dialogue.messages", 0, 0, CID.encode(), value)
    return check_storable(decode_all([record]), unstorable)


def fate(value: bytes | None) -> tuple[int, int]:
    """(accepted, rejected) of a one-record batch, checking what each outcome holds."""
    batch = sort_one(value)
    for item in batch.accepted:
        message = item.message
        doc = history_doc(
            StoredMessage(
                message.cid, 1, message.id, message.uid, message.text, message.createdAt, 0.0, 0, 0
            )
        )
        assert bson.decode(bson.encode(doc)) == doc  # what is stored reads back the same
        assert 1 <= message.uid <= UID_MAX
        assert CREATED_MIN <= message.createdAt <= time.time() + FUTURE_SLACK
        assert 0 < len(message.text) <= TEXT_MAX and message.text.strip()
        assert "\x00" not in message.text
    for rejected in batch.rejected:
        assert rejected.reason and rejected.record.value is value
    return len(batch.accepted), len(batch.rejected)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(values(CID, UID))
def test_every_value_is_stored_sanely_or_dead_lettered(value: bytes | None) -> None:
    assert sum(fate(value)) == 1


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(bounded_values(CID, UID))
def test_a_value_at_the_outer_bounds_meets_the_fate_the_contract_gives_it(case: Bounded) -> None:
    """Up to RECORD_MAX_BYTES and followed by JSON whitespace only: stored as sent (read
    back with the standard library's parser). Past the size, followed by anything else
    (a second record, garbage), not UTF-8, or a tombstone: dead-lettered as invalid, the
    reason saying which."""
    value, words = case
    batch = sort_one(value)
    if words is None:
        assert value is not None and len(value) <= RECORD_MAX_BYTES
        assert not batch.rejected
        [kept] = batch.accepted
        assert kept.message.model_dump() == json.loads(value)
    else:
        assert not batch.accepted
        [refused] = batch.rejected
        assert refused.kind is RejectKind.INVALID
        assert words in refused.reason, refused.reason


def test_a_value_of_exactly_the_limit_is_stored_and_one_byte_more_is_refused_for_size() -> None:
    record = encode(base(CID, UID, "\U0001f600" * TEXT_MAX))  # the longest text, escaped
    for where in (1, len(record) - 1, len(record)):  # after "{", before "}", after the object
        at_limit = padded(record, RECORD_MAX_BYTES, where)
        past = padded(record, RECORD_MAX_BYTES + 1, where)
        assert (len(at_limit), len(past)) == (65_536, 65_537)
        assert fate(at_limit) == (1, 0)
        [refused] = sort_one(past).rejected
        assert refused.kind is RejectKind.INVALID and TOO_LARGE in refused.reason


def test_every_edge_value_has_one_fate_and_the_sane_ones_are_kept() -> None:
    fates = [fate(v) for v in edge_values(CID, UID)]
    assert all(sum(f) == 1 for f in fates)
    accepted = sum(a for a, _ in fates)
    # Four-byte characters, RTL overrides, zero-width characters, a BOM in the text, a
    # duplicate key whose last value is good, 4096 characters: valid messages, kept.
    assert 8 <= accepted < len(fates) // 2, accepted


def test_a_record_whose_decoding_fails_unexpectedly_is_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guard behind the validation: a defect in decoding dead-letters the record
    instead of stopping its partition (faust restarts the agent, the batch comes again)."""

    def broken(value: bytes | None) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(records_module, "decode_record", broken)
    good = InboundRecord("dialogue.messages", 0, 0, CID.encode(), b"{}")
    batch = decode_all([good])
    assert not batch.accepted
    [rejected] = batch.rejected
    assert rejected.kind is RejectKind.INVALID and rejected.reason == "undecodable: RecursionError"


def test_a_record_standing_for_an_unreadable_batch_is_dead_lettered_with_the_reason() -> None:
    """The consumer reads a batch that does not decompress within its bound (or at all)
    as one such record per offset (platform_common/kafka_records.py): dead-lettered as
    invalid, saying why, whatever its value."""
    why = b"record batch of offsets 70..72 is unreadable: zstd: failed to write whole buffer"
    for value in (None, b'{"v": 1}'):
        record = InboundRecord(
            "dialogue.messages", 0, 70, None, value, headers=((UNREADABLE_HEADER, why),)
        )
        batch = decode_all([record])
        assert not batch.accepted
        [refused] = batch.rejected
        assert refused.kind is RejectKind.INVALID and refused.reason == why.decode()
