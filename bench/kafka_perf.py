"""Broker throughput of a local 3-node Kafka cluster, with Kafka's own producer benchmark.

    python -m bench.kafka_perf [--records 300000] [--size 300]

Starts a private 3-node KRaft cluster (infra/local, LOCAL_KAFKA_NODES=3) on free ports
under a temporary folder, creates a 12-partition topic with 3 replicas and
min.insync.replicas=2 (what the workers create on such a cluster), and runs
`kafka-producer-perf-test` (org.apache.kafka.tools.ProducerPerformance) against it:
acks=all with idempotence (the platform's producers), then acks=1 for comparison. Prints
the tool's summary lines. The cluster is stopped and its folder removed afterwards.
docs/capacity.md uses the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench._common import number
from infra.local import LocalSettings
from infra.local.kafka import Kafka, node_names
from infra.processes.private import free_range, private_stack

TOPIC = "perf"
PARTITIONS = 12
#: Lines of the tool's stderr an error shows.
STDERR_TAIL = 20


class PerfFailed(RuntimeError):
    """Kafka's producer benchmark could not run or failed; the message has its stderr."""


async def create_topic(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(TOPIC, PARTITIONS, 3, topic_configs={"min.insync.replicas": "2"})]
        )
    finally:
        await admin.close()


def perf_test(kafka: Kafka, bootstrap: str, records: int, size: int, acks: str) -> str:
    """Run ProducerPerformance; its last line is the summary."""
    props = [f"bootstrap.servers={bootstrap}", f"acks={acks}", "linger.ms=5"]
    if acks == "all":
        props.append("enable.idempotence=true")
    argv = [
        "java",
        "-Xmx512m",
        "-cp",
        f"{kafka.libs}/*",
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        TOPIC,
        "--num-records",
        str(records),
        "--record-size",
        str(size),
        "--throughput",
        "-1",
        "--producer-props",
        *props,
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise PerfFailed("java is not on PATH: ProducerPerformance needs a Java runtime") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-STDERR_TAIL:])
        raise PerfFailed(
            f"ProducerPerformance (acks={acks}) exited with {done.returncode}; "
            f"its stderr ends with:\n{tail or '(empty)'}"
        )
    return lines[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=number(int, 1), default=300_000)
    parser.add_argument("--size", type=number(int, 1), default=300, help="bytes per record")
    args = parser.parse_args()
    shared = LocalSettings.from_env()
    env = {
        "LOCAL_KAFKA_NODES": "3",
        "LOCAL_KAFKA_PORT": str(free_range(21)),
        "LOCAL_KAFKA_CONTROLLER_PORT": str(free_range(21)),
    }
    with tempfile.TemporaryDirectory(prefix="kafka-perf-") as run_dir:
        with private_stack(Path(run_dir), shared.cache_dir, node_names(3), env) as stack:
            bootstrap = stack.settings.kafka_bootstrap
            kafka = stack.services["kafka-1"]
            assert isinstance(kafka, Kafka)
            asyncio.run(create_topic(bootstrap))
            print(
                f"3 nodes, topic {TOPIC}: {PARTITIONS} partitions, RF 3, min ISR 2; "
                f"{args.records} records of {args.size} B"
            )
            for acks in ("all", "1"):
                line = perf_test(kafka, bootstrap, args.records, args.size, acks)
                print(f"acks={acks:<3} {line}")


if __name__ == "__main__":
    main()
