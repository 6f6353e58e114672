"""When a described topic counts as served (the worker waits for that at start)."""

from __future__ import annotations

from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from dialogue_worker.adapters.topics import _key_hash, is_served, keyed_partitioner


def topic(error: int, leaders: list[int]) -> dict[str, Any]:
    return {"topic": "t", "error_code": error, "partitions": [{"leader": x} for x in leaders]}


def test_a_topic_is_served_once_every_partition_has_a_leader() -> None:
    assert is_served(topic(0, [1, 1, 1]))
    assert not is_served(topic(0, []))  # just created: no partitions in the metadata yet
    assert not is_served(topic(0, [1, -1]))  # a partition without a leader
    assert not is_served(topic(5, [1]))  # LEADER_NOT_AVAILABLE


@settings(max_examples=300)
@given(key=st.binary(max_size=64), partitions=st.integers(min_value=1, max_value=256))
def test_the_outbox_places_a_keyed_record_where_kafkas_default_partitioner_does(
    key: bytes, partitions: int
) -> None:
    ids = list(range(partitions))
    expected = DefaultPartitioner()(key, ids, ids)
    assert keyed_partitioner(key, ids, ids) == expected
    assert keyed_partitioner(key, ids, ids) == expected  # and again, from the remembered hash


def test_an_unkeyed_record_goes_to_an_available_partition() -> None:
    assert keyed_partitioner(None, [0, 1, 2], [2]) == 2


@settings(max_examples=50)
@given(key=st.binary(min_size=65, max_size=4096), partitions=st.integers(1, 64))
def test_long_and_mutable_keys_are_placed_by_the_default_and_not_remembered(
    key: bytes, partitions: int
) -> None:
    ids = list(range(partitions))
    expected = DefaultPartitioner()(key, ids, ids)
    remembered = _key_hash.cache_info().currsize
    assert keyed_partitioner(key, ids, ids) == expected
    assert keyed_partitioner(bytearray(key[:8]), ids, ids) == DefaultPartitioner()(
        bytearray(key[:8]), ids, ids
    )
    assert _key_hash.cache_info().currsize == remembered
