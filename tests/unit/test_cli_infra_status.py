"""`python -m infra.local status` shows Kafka as the layout that runs: after `make dev
KAFKA_NODES=3`, `make infra-status` (LOCAL_KAFKA_NODES unset) said `kafka stopped` and
exited 3 while kafka-1 … kafka-3 ran, and `status kafka-1` was a usage error. Its help
names the services of the stack it runs.

The Kafka nodes are stand-in processes under the real services' pid files in a scratch
run folder; whether a service answers is decided by the test, not by its port."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local import __main__ as cli
from infra.local.kafka import Kafka
from infra.local.service import Service
from infra.local.settings import LocalSettings
from infra.local.stack import Stack
from tests.support.local_infra import SLEEPER, Recorder


def _settings(folder: Path, nodes: int) -> LocalSettings:
    return LocalSettings.from_env(
        {
            "LOCAL_RUN_DIR": str(folder / "run"),
            "LOCAL_CACHE_DIR": str(folder / "cache"),
            "LOCAL_POSTGRES_RUN_DIR": str(folder / "run"),
            "LOCAL_KAFKA_NODES": str(nodes),
        }
    )


@pytest.fixture
def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Stack]]:
    """Stacks whose Kafka nodes a test started (stopped after it); a Kafka node answers
    as soon as its process runs, the other services never."""

    def answers(self: Stack, service: Service) -> bool:
        return isinstance(service, Kafka)

    monkeypatch.setattr(Stack, "_ready", answers)
    made: list[Stack] = []
    yield made
    for stack in made:  # those _start_kafka started its nodes with
        for name in stack.services:
            stack.process(name).kill()


def _start_kafka(folder: Path, nodes: int) -> Stack:
    """The nodes of a `nodes`-node cluster running, as `make dev KAFKA_NODES=nodes` leaves them."""
    stack = Stack(_settings(folder, nodes), Recorder())
    for service in stack.services.values():
        if isinstance(service, Kafka):
            service.data_dir.mkdir(parents=True, exist_ok=True)
            argv = [sys.executable, "-c", SLEEPER, service.marker]
            stack.process(service.name).start(argv, cwd=service.data_dir)
    return stack


@pytest.mark.parametrize(("started", "asked"), [(3, 1), (1, 3)])
def test_status_shows_the_kafka_layout_that_runs(
    tmp_path: Path, running: list[Stack], started: int, asked: int
) -> None:
    running.append(_start_kafka(tmp_path, started))
    stack = Stack(_settings(tmp_path, asked), Recorder())
    rows = {row.name: row for row in stack.status()}
    nodes = ["kafka"] if started == 1 else ["kafka-1", "kafka-2", "kafka-3"]
    assert [name for name in rows if name.startswith("kafka")] == nodes
    assert all(rows[name].pid and rows[name].ready for name in nodes)
    assert list(rows)[:3] == ["mariadb", "postgres", "consul"] and list(rows)[-1] == "ferretdb"


def test_status_shows_the_configured_layout_when_kafka_does_not_run(
    tmp_path: Path, running: list[Stack]
) -> None:
    stack = Stack(_settings(tmp_path, 3), Recorder())
    kafka = [row for row in stack.status() if row.name.startswith("kafka")]
    assert [row.name for row in kafka] == ["kafka-1", "kafka-2", "kafka-3"]
    assert not any(row.pid for row in kafka)


def test_python_m_infra_local_status_names_the_nodes_that_run(
    tmp_path: Path,
    running: list[Stack],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    running.append(_start_kafka(tmp_path, 3))
    stack = Stack(_settings(tmp_path, 1), Recorder())
    monkeypatch.setattr(cli, "Stack", lambda: stack)
    assert cli.main(["status", "kafka-1", "kafka-3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["kafka-1", "ready"], ["kafka-3", "ready"]]
    assert cli.main(["status", "kafka"]) == 3  # asked for by name: not running
    assert capsys.readouterr().out.split()[:2] == ["kafka", "stopped"]


@pytest.mark.parametrize(
    ("nodes", "named"), [(1, "kafka, ferretdb"), (3, "kafka-1, kafka-2, kafka-3, ferretdb")]
)
def test_the_help_names_the_services_of_the_stack(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    nodes: int,
    named: str,
) -> None:
    stack = Stack(_settings(tmp_path, nodes), Recorder())
    monkeypatch.setattr(cli, "Stack", lambda: stack)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert f"mariadb, postgres, consul, {named} (default: all)" in said
    assert "purge" in said
