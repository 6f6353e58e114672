"""The local Kafka's layout: one node by default, or a 3-node cluster (LOCAL_KAFKA_NODES)."""

from __future__ import annotations

import pytest

from dialogue_worker.adapters.topics import Durability
from infra.local import LocalSettings
from infra.local.kafka import Kafka
from infra.local.stack import Stack


def settings(**env: str) -> LocalSettings:
    return LocalSettings.from_env({"LOCAL_RUN_DIR": "/tmp/dialogue-test-run", **env})


def test_one_node_by_default() -> None:
    s = settings()
    assert s.kafka_nodes == 1 and s.kafka_bootstrap == "127.0.0.1:9092"
    assert [n for n in Stack(s).services if n.startswith("kafka")] == ["kafka"]


def test_three_nodes_listen_ten_ports_apart_and_know_each_other() -> None:
    s = settings(LOCAL_KAFKA_NODES="3", LOCAL_KAFKA_PORT="29092")
    assert s.kafka_bootstrap == "127.0.0.1:29092,127.0.0.1:29102,127.0.0.1:29112"
    nodes = [v for v in Stack(s).services.values() if isinstance(v, Kafka)]
    assert [n.name for n in nodes] == ["kafka-1", "kafka-2", "kafka-3"]
    properties = dict(line.split("=", 1) for line in nodes[1]._properties())
    assert properties["node.id"] == "2"
    assert properties["controller.quorum.voters"] == (
        "1@127.0.0.1:9093,2@127.0.0.1:9103,3@127.0.0.1:9113"
    )
    assert properties["min.insync.replicas"] == "2"
    assert properties["default.replication.factor"] == "3"
    assert properties["broker.session.timeout.ms"] == "2000"


@pytest.mark.parametrize("count", ["2", "0", "x"])
def test_other_node_counts_are_refused_readably(count: str) -> None:
    with pytest.raises(SystemExit, match="LOCAL_KAFKA_NODES"):
        settings(LOCAL_KAFKA_NODES=count)


@pytest.mark.parametrize(
    ("brokers", "replication", "min_insync", "expected"),
    [
        (1, 0, 0, Durability(1, 1)),
        (2, 0, 0, Durability(2, 1)),
        (3, 0, 0, Durability(3, 2)),
        (5, 0, 0, Durability(3, 2)),
        (3, 2, 0, Durability(2, 1)),
        (3, 3, 3, Durability(3, 3)),
    ],
)
def test_topics_get_three_copies_and_two_in_sync_when_the_cluster_allows(
    brokers: int, replication: int, min_insync: int, expected: Durability
) -> None:
    assert Durability.for_cluster(brokers, replication, min_insync) == expected


def test_stopping_names_of_the_other_layout_is_not_an_error(tmp_path: object) -> None:
    """make dev-down after make dev KAFKA_NODES=3, without KAFKA_NODES: it names kafka-1..3."""
    stack = Stack(settings(LOCAL_RUN_DIR=str(tmp_path)))
    assert stack.down(["consul", "kafka-1", "kafka-2", "kafka-3"]) == []  # none runs here
