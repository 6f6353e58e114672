"""When a described topic counts as served (the worker waits for that at start)."""

from __future__ import annotations

from typing import Any

from dialogue_worker.adapters.topics import is_served


def topic(error: int, leaders: list[int]) -> dict[str, Any]:
    return {"topic": "t", "error_code": error, "partitions": [{"leader": x} for x in leaders]}


def test_a_topic_is_served_once_every_partition_has_a_leader() -> None:
    assert is_served(topic(0, [1, 1, 1]))
    assert not is_served(topic(0, []))  # just created: no partitions in the metadata yet
    assert not is_served(topic(0, [1, -1]))  # a partition without a leader
    assert not is_served(topic(5, [1]))  # LEADER_NOT_AVAILABLE
