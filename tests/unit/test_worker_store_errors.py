"""Which store errors pass when tried again (StorageUnavailable) and which are about the
request or the document (StoreRefused).

FerretDB answers InternalError (code 1) for anything its PostgreSQL connection meets: a
backend terminated or a connection that timed out must hold the batch and answer 5030,
not halve the batch as a refusal and answer 5000. The messages below are FerretDB's own,
as this stack printed them; the same errors are caused for real in
tests/integration/test_worker_faults.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymongo.errors import BulkWriteError, OperationFailure

from dialogue_worker.adapters.mongo import INTERNAL_ERROR, TRANSIENT_CODES, failure, passing
from dialogue_worker.adapters.mongo_log import _duplicates
from dialogue_worker.errors import StorageUnavailable, StoreRefused

TERMINATED = (
    "[msg_insert.go:112 handler.(*Handler).MsgInsert] FATAL: terminating connection due to "
    "administrator command (SQLSTATE 57P01)"
)
TIMED_OUT = (
    "[msg_update.go:133 handler.(*Handler).updateDocument] [update.go:114 "
    "common.UpdateDocument] [collection.go:227 postgresql.(*collection).UpdateAll] timeout: "
    "read tcp 127.0.0.1:59552->127.0.0.1:5433: i/o timeout"
)
REFUSED_CONNECTION = (
    "[msg_find.go:95 handler.(*Handler).MsgFind] failed to connect to `host=127.0.0.1 "
    "user=ferretdb database=ferretdb`: dial error (dial tcp 127.0.0.1:5433: connect: "
    "connection refused)"
)
ROW_TOO_LARGE = (
    "[msg_insert.go:112 handler.(*Handler).MsgInsert] ERROR: index row size 3424 exceeds "
    'btree version 4 maximum 2704 for index "chats_users_idx" (SQLSTATE 54000)'
)
STALE = 'ERROR: stale write on _id "x" (SQLSTATE 40001)'

PASSING_CLASSES = {"08", "40", "53", "57", "58"}
SQLSTATE = st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=5, max_size=5)


def internal(message: str) -> OperationFailure:
    return OperationFailure(message, code=INTERNAL_ERROR, details={"errmsg": message, "code": 1})


@pytest.mark.parametrize("message", [TERMINATED, TIMED_OUT, REFUSED_CONNECTION, STALE])
def test_ferretdb_losing_its_postgresql_connection_is_transient(message: str) -> None:
    assert isinstance(failure(internal(message)), StorageUnavailable)


def test_a_document_postgresql_cannot_index_is_still_refused() -> None:
    assert isinstance(failure(internal(ROW_TOO_LARGE)), StoreRefused)


@given(SQLSTATE)
def test_an_internal_error_passes_by_its_sqlstate_class(state: str) -> None:
    message = f"[msg_update.go:133 handler.(*Handler).updateDocument] ERROR: x (SQLSTATE {state})"
    assert passing(INTERNAL_ERROR, message) == (state[:2] in PASSING_CLASSES)


@given(st.integers(-(2**31), 2**31 - 1), st.sampled_from([TERMINATED, TIMED_OUT]))
def test_only_an_internal_error_is_judged_by_its_words(code: int, message: str) -> None:
    """Another code keeps its meaning: the words of a backend failure do not make, say, a
    BadValue (2) transient."""
    expected = code == INTERNAL_ERROR or code in TRANSIENT_CODES
    assert passing(code, message) == expected


@pytest.mark.parametrize(
    ("message", "raised"),
    [(TERMINATED, StorageUnavailable), (TIMED_OUT, StorageUnavailable), ("no", StoreRefused)],
)
def test_a_bulk_insert_s_internal_errors_are_judged_the_same(
    message: str, raised: type[Exception]
) -> None:
    error = BulkWriteError(
        {"writeErrors": [{"index": 0, "code": INTERNAL_ERROR, "errmsg": message}]}
    )
    with pytest.raises(raised):
        _duplicates(error.details)


@given(
    st.sampled_from([INTERNAL_ERROR, 2, 10334]),
    st.sampled_from([TERMINATED, TIMED_OUT, "x (SQLSTATE 40001)", "connection refused"]),
)
def test_a_refusal_is_judged_by_the_servers_words_not_by_the_document(
    code: int, words: str
) -> None:
    """pymongo copies the refused document into each bulk write error (`op`), and str()
    of the error quoted it: a message whose text mentioned a network error made a
    refusal transient, retried for ever instead of dead-lettered (found in review)."""
    refused = {"index": 0, "code": code, "errmsg": "refused", "op": {"text": words}}
    with pytest.raises(StoreRefused):
        _duplicates(BulkWriteError({"writeErrors": [refused]}).details)
