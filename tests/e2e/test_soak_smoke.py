"""The soak harness (`python -m bench.soak`, `make soak`) runs end to end: two minutes of
its mixed load, at small rates, on a copy of make dev's platform that it starts and
stops itself. Checked: it exits 0, its CSV has a row per sample with the series the
docs name, its PNG and summary exist, and the summary says the invariants held over
something (messages acknowledged, deliveries owed). No figure of the run is asserted
(tests never assert on speed); its summary is printed.

The copy has its own ports, run folder, topic, group, database, worker ids and Consul
agent (workers always register as service "dialogue", see test_dev_platform.py).
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra.local.process import ManagedProcess
from infra.processes.private import free_range

REPO = Path(__file__).resolve().parents[2]
SAMPLES = 12  # two minutes, a sample every 10 s
#: Small rates: the smoke run checks the harness, not the platform's capacity.
SMALL = {
    "--minutes": "2",
    "--interval": "10",
    "--users": "12",
    "--sockets": "16",
    "--chats": "10",
    "--hot-chats": "1",
    "--hot-members": "8",
    "--sign-ins": "0.2",
    "--posts": "4",
    "--history": "2",
    "--chat-lists": "1",
    "--read-marks": "1",
    "--produce": "1",
    "--addresses": "4",
}
#: Series docs/soak.md describes; the CSV must have a column for each.
COLUMNS = {
    "t_s",
    "rss_mb_gateway",
    "rss_mb_worker-1",
    "rss_mb_worker-2",
    "rss_mb_postgres",
    "cpu_pct_gateway",
    "sockets_gateway",
    "stream_sockets_gateway",
    "stream_sockets_clients",
    "post_p99_ms",
    "history_p99_ms",
    "chat_list_p99_ms",
    "read_mark_p99_ms",
    "produce_p99_ms",
    "push_p99_ms",
    "errors_total",
    "errors_5xx",
    "lag_max",
}


@pytest.fixture(scope="module")
def soak_env(
    consul_url: str, unique: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """make dev's settings for a copy of its own (as tests/e2e/test_dev_platform.py).
    Afterwards `infra.dev down` stops whatever of it still runs: the soak stops its
    platform itself, but not when the timeout below kills it, and its gateway and
    workers run in sessions of their own, so they outlived `make test` (found in review)."""
    env = {
        **os.environ,
        "DEV_RUN_DIR": str(tmp_path_factory.mktemp("soak-run")),
        "DEV_GATEWAY_PORT": str(free_range(1)),
        "DEV_WORKER_BASE_PORT": str(free_range(4)),
        "DEV_CONSUL_URL": consul_url,
        "DEV_TOPIC": unique("soak-messages"),
        "DEV_TOPIC_PARTITIONS": "3",
        "DEV_APP_ID": unique("soak-app"),
        "DEV_MONGO_DB": unique("soak_db").replace("-", "_"),
        "DEV_ID_PREFIX": unique("soak"),
    }
    yield env
    down = subprocess.run(
        [sys.executable, "-m", "infra.dev", "down"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert down.returncode == 0, f"{down.stdout}\n{down.stderr}"


def test_a_short_soak_reports_and_its_invariants_hold(
    soak_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "report"
    flags = [part for pair in SMALL.items() for part in pair]
    result = subprocess.run(
        [sys.executable, "-m", "bench.soak", *flags, "--out", str(out)],
        cwd=REPO,
        env=soak_env,
        capture_output=True,
        text=True,
        timeout=900,  # a bound on a hung harness, not a figure
    )
    print(result.stdout)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr[-5000:]}"

    with (out / "soak.csv").open(newline="") as rows_file:
        rows = list(csv.DictReader(rows_file))
    assert len(rows) == SAMPLES
    assert COLUMNS <= set(rows[0]), sorted(COLUMNS - set(rows[0]))
    assert any(column.startswith("rss_mb_kafka") for column in rows[0])  # kafka or kafka-1..3
    assert all(row["rss_mb_gateway"] and row["rss_mb_worker-1"] for row in rows)
    assert (out / "soak.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    summary = (out / "summary.txt").read_text()
    assert summary == result.stdout
    assert "result: invariants hold" in summary
    assert ", missing 0, duplicated 0" in summary
    assert "deliveries: missing 0 " in summary
    assert "out of order 0, uncovered gaps 0;" in summary
    # The checks held over something: messages were acknowledged, deliveries were owed.
    acknowledged = re.search(r"messages: (\d+) acknowledged", summary)
    owed = re.search(r"live: \d+ clients owed (\d+) deliveries", summary)
    assert acknowledged and int(acknowledged[1]) > 0, summary
    assert owed and int(owed[1]) > 0, summary

    run_dir = Path(soak_env["DEV_RUN_DIR"])
    assert ManagedProcess("gateway", run_dir, "-m gateway").pid() is None, "left running"
