"""Property: every record value, at and past every bound, ends stored sanely or
dead-lettered with a reason; decoding, sorting and encoding never raise."""

from __future__ import annotations

import time

import bson
import pytest
from hypothesis import HealthCheck, given, settings

from contracts.records import CREATED_MIN, FUTURE_SLACK, TEXT_MAX, UID_MAX
from dialogue_worker.adapters.mongo import history_doc, unstorable
from dialogue_worker.domain import records as records_module
from dialogue_worker.domain.records import (
    InboundRecord,
    RejectKind,
    check_storable,
    decode_all,
)
from dialogue_worker.services.ports import StoredMessage
from tests.support.hostile import edge_values, values

CID = "65f0c0ffee0000000000beef"
UID = 7


def fate(value: bytes) -> tuple[int, int]:
    """(accepted, rejected) of a one-record batch, checking what each outcome holds."""
    record = InboundRecord("dialogue.messages", 0, 0, CID.encode(), value)
    batch = check_storable(decode_all([record]), unstorable)
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
        assert rejected.reason and rejected.record is record
    return len(batch.accepted), len(batch.rejected)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(values(CID, UID))
def test_every_value_is_stored_sanely_or_dead_lettered(value: bytes) -> None:
    assert sum(fate(value)) == 1


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
