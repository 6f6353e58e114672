"""A batch's documents are inserted as several commands sent together. Unordered (a
batch's messages) they must answer as one unordered insert would: duplicates by their place
in the whole batch, every command ended before a failure is raised, a transient failure
preferred over a refusal. Ordered (a batch's id entries) each chat's entries go from the
lowest seq and none is written past one already there.

The collection here is a hand-written stand-in that answers each command as scripted; the
same path runs against FerretDB in tests/integration/test_worker_persistence.py."""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pymongo.errors import AutoReconnect, BulkWriteError, OperationFailure

from contracts.ids import new_id
from dialogue_worker.adapters.mongo import DUPLICATE_KEY, MongoDatabase
from dialogue_worker.adapters.mongo_log import INSERT_CHUNK, ORDERED_CHUNK, MongoMessageLog
from dialogue_worker.errors import StorageUnavailable, StoreRefused
from dialogue_worker.services.ports import IdEntry

CID = "5f0000000000000000000001"
Answer = Callable[[list[dict[str, Any]]], None]


def duplicates_at(*indexes: int) -> Answer:
    def answer(docs: list[dict[str, Any]]) -> None:
        errors = [{"index": i, "code": DUPLICATE_KEY, "errmsg": "E11000"} for i in indexes]
        raise BulkWriteError({"writeErrors": errors, "nInserted": len(docs) - len(errors)})

    return answer


def bulk_error(code: int) -> Answer:
    def answer(docs: list[dict[str, Any]]) -> None:
        raise BulkWriteError({"writeErrors": [{"index": 0, "code": code, "errmsg": "no"}]})

    return answer


def raising(exc: BaseException) -> Answer:
    def answer(docs: list[dict[str, Any]]) -> None:
        raise exc

    return answer


def stored(docs: list[dict[str, Any]]) -> None:
    return None


class Commands:
    """A collection whose n-th `insert` command answers as `answers[n]`, each after the
    previous one has started, so all are in flight together."""

    def __init__(self, *answers: Answer, in_turn: bool = False) -> None:
        self.answers = answers
        self.sizes: list[int] = []
        self.ordered: list[bool] = []
        self.ended = 0
        self.all_started = asyncio.Event()
        if in_turn:  # commands sent one after another: none waits for the others
            self.all_started.set()

    async def insert_many(self, docs: list[dict[str, Any]], ordered: bool) -> None:
        self.ordered.append(ordered)
        answer = self.answers[len(self.sizes)]
        self.sizes.append(len(docs))
        if len(self.sizes) == len(self.answers):
            self.all_started.set()
        await self.all_started.wait()
        try:
            answer(docs)
        finally:
            self.ended += 1


def entries(n: int) -> list[IdEntry]:
    """n entries of one chat, seqs 1..n."""
    return [IdEntry(new_id(), CID, 1 + i, 1, "h", 0, i) for i in range(n)]


def one_each(n: int) -> list[IdEntry]:
    """n entries of n chats, in the order of their chat ids."""
    return [IdEntry(new_id(), f"{i + 1:024x}", 1, 1, "h", 0, i) for i in range(n)]


def docs(n: int) -> list[dict[str, Any]]:
    return [{"_id": i} for i in range(n)]


def log_over(ids: Commands) -> MongoMessageLog:
    return MongoMessageLog(cast(MongoDatabase, SimpleNamespace(ids=ids)))


async def test_duplicates_of_every_command_are_told_by_their_place_in_the_batch() -> None:
    ids = Commands(duplicates_at(0, 5), stored, duplicates_at(INSERT_CHUNK - 1), duplicates_at(0))
    failed = await log_over(ids)._insert(ids, docs(3 * INSERT_CHUNK + 1))
    assert ids.sizes == [INSERT_CHUNK, INSERT_CHUNK, INSERT_CHUNK, 1]
    assert ids.ordered == [False] * 4
    assert failed == {0, 5, 3 * INSERT_CHUNK - 1, 3 * INSERT_CHUNK}


async def test_a_chats_entries_go_in_turn_and_none_past_one_already_there() -> None:
    batch = entries(2 * ORDERED_CHUNK + 50)
    ids = Commands(stored, duplicates_at(3), stored, in_turn=True)
    unwritten = await log_over(ids).claim(list(reversed(batch)))
    assert ids.sizes == [ORDERED_CHUNK, ORDERED_CHUNK] and ids.ordered == [True, True]
    assert unwritten == {e.id for e in batch[ORDERED_CHUNK + 3 :]}  # the third never sent


async def test_a_command_of_whole_chats_stopped_by_one_leaves_the_chats_after_it() -> None:
    batch = one_each(ORDERED_CHUNK + 1)
    ids = Commands(duplicates_at(10), stored)
    unwritten = await log_over(ids).claim(batch)
    assert ids.sizes == [ORDERED_CHUNK, 1]
    assert unwritten == {e.id for e in batch[10:ORDERED_CHUNK]}


@pytest.mark.parametrize("order", [0, 1])
async def test_a_transient_failure_is_raised_over_a_refusal_after_every_command_ended(
    order: int,
) -> None:
    refusal = raising(OperationFailure("bad value", code=2))
    transient = raising(AutoReconnect("connection reset"))
    answers = [refusal, transient] if order == 0 else [transient, refusal]
    ids = Commands(*answers, stored)
    with pytest.raises(StorageUnavailable, match="connection reset"):
        await log_over(ids).claim(one_each(2 * ORDERED_CHUNK + 1))
    assert ids.ended == 3


@pytest.mark.parametrize(
    ("answer", "raised"),
    [
        (raising(OperationFailure("bad value", code=2)), StoreRefused),
        (bulk_error(2), StoreRefused),
        (bulk_error(91), StorageUnavailable),  # ShutdownInProgress: retry later
    ],
)
async def test_one_failed_command_fails_the_insert_as_one_insert_would(
    answer: Answer, raised: type[Exception]
) -> None:
    ids = Commands(duplicates_at(3), answer)
    with pytest.raises(raised):
        await log_over(ids).claim(one_each(ORDERED_CHUNK + 1))
    assert ids.ended == 2
    ids = Commands(duplicates_at(3), answer)
    with pytest.raises(raised):
        await log_over(ids)._insert(ids, docs(INSERT_CHUNK + 1))
    assert ids.ended == 2


async def test_an_error_that_is_not_the_store_s_is_raised_as_it_is() -> None:
    ids = Commands(raising(RuntimeError("a bug")), raising(AutoReconnect("reset")))
    with pytest.raises(RuntimeError, match="a bug"):
        await log_over(ids).claim(one_each(ORDERED_CHUNK + 1))
    assert ids.ended == 2


async def test_nothing_to_insert_sends_nothing() -> None:
    ids = Commands()
    assert await log_over(ids).claim([]) == set()
    assert ids.sizes == []


async def test_a_refused_insert_carries_no_document_into_a_logged_traceback() -> None:
    """pymongo's BulkWriteError text holds each failed document: chained as the cause,
    a traceback logged with the error (write_behind.py logs one) wrote message texts to
    the log (found in review)."""

    def refused_with_the_documents(docs: list[dict[str, Any]]) -> None:
        op = {"_id": 1, "text": "a private message text"}
        raise BulkWriteError({"writeErrors": [{"index": 0, "code": 2, "errmsg": "no", "op": op}]})

    ids = Commands(refused_with_the_documents)
    with pytest.raises(StoreRefused) as refused:
        await log_over(ids)._insert(ids, docs(1))
    told = "".join(traceback.format_exception(refused.value))
    assert "a private message text" not in told and "code 2: no" in told
