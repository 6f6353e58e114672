"""`--help` of the services and the benchmarks: `python -m gateway --help` and `python -m
dialogue_worker --help` used to start the service; they say where the settings come from,
and any other argument is a usage error. A benchmark's help shows its whole summary."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import dialogue_worker.__main__ as worker_main
import gateway.__main__ as gateway_main

REPO = Path(__file__).resolve().parents[2]
MAINS: dict[str, Callable[[list[str]], object]] = {
    "gateway": gateway_main.main,
    "dialogue_worker": worker_main.main,
}
DOCS = {"gateway": "docs/gateway.md", "dialogue_worker": "docs/worker.md"}


@pytest.fixture(autouse=True)
def _never_started(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the settings were read: the service was on its way to start")

    monkeypatch.setattr(gateway_main, "GatewaySettings", refuse)
    monkeypatch.setattr(worker_main, "WorkerSettings", refuse)


@pytest.mark.parametrize("program", MAINS)
def test_help_says_the_settings_are_environment_variables(
    program: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        MAINS[program](["--help"])
    assert stopped.value.code == 0
    said = " ".join(capsys.readouterr().out.split())
    assert f"usage: python -m {program}" in said
    assert "environment variable" in said and DOCS[program] in said


@pytest.mark.parametrize("program", MAINS)
@pytest.mark.parametrize("argv", [["--port", "8007"], ["serve"], ["-v"]])
def test_an_argument_is_a_usage_error(
    program: str, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        MAINS[program](argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: python -m {program}") and "unrecognized arguments" in err


@pytest.mark.parametrize(
    ("program", "bad"), [("gateway", "GATEWAY_PORT"), ("dialogue_worker", "WORKER_PORT")]
)
def test_python_m_reads_its_command_line(program: str, bad: str) -> None:
    """Through `python -m`, as an operator types it. A bad port in the environment makes
    a start that ignored `--help` stop at its settings, never bind."""
    env = {**os.environ, bad: "not-a-port", "DIALOGUE_ENV": "local"}
    done = subprocess.run(
        [sys.executable, "-m", program, "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: python -m {program}")


@pytest.mark.parametrize("bench", ["gateway_bench", "live_bench", "scaling_bench", "worker_bench"])
def test_a_benchmarks_help_shows_its_whole_summary(bench: str) -> None:
    """Only the docstring's first line was shown, cut mid-sentence."""
    summary = importlib.import_module(f"bench.{bench}").__doc__
    assert summary
    first_paragraph = " ".join(summary.split("\n\n")[0].split())
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{bench}", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert first_paragraph in " ".join(done.stdout.split())
