"""The gateways and workers tests and benchmarks start take their settings from the test
alone: a setting exported in the developer's shell (a sourced compose `.env`) used to
reach them, e.g. ADMIN_TOKEN, against which the tests' admin calls then got 401."""

from __future__ import annotations

import itertools

import pytest

from gateway.settings import GatewaySettings
from infra.local import LocalSettings
from infra.processes.gateway import LOOSE_LIMITS, GatewayProcess, gateway_env
from infra.processes.worker import WorkerProcess


def test_settings_in_the_shell_reach_neither_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "ADMIN_TOKEN": "from-the-shell-0123456789abcdef0123456789",
        "WORKER_SERVICE": "someone-elses",
        "trusted_proxies": "10.0.0.0/8",
        "BATCH_SIZE": "3",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH_OF_MY_OWN", "kept")
    counter = itertools.count()
    worker = WorkerProcess.for_test(LocalSettings.from_env(), lambda p: f"{p}-{next(counter)}")
    started_with = worker.environment()
    assert "WORKER_SERVICE" not in started_with and "BATCH_SIZE" not in started_with
    assert started_with["PATH_OF_MY_OWN"] == "kept"  # what is not a setting stays
    gateway = GatewayProcess(gateway_env(LocalSettings.from_env(), "db", worker, "http://c"))
    assert "ADMIN_TOKEN" not in gateway.env and "trusted_proxies" not in gateway.env
    assert gateway.env["GATEWAY_PORT"] == str(gateway.port)
    assert gateway.env["PATH_OF_MY_OWN"] == "kept"


def test_the_gateways_tests_start_are_held_back_by_no_rate_limit() -> None:
    """Every rate limit the gateway has is loosened for the tests' gateways (a limit
    added later included); a test about one limit sets it itself."""
    limits = {
        name.upper()
        for name in GatewaySettings.model_fields
        if name.startswith("rate_") and name.endswith(("_per_address", "_per_user"))
    }
    assert "RATE_READS_PER_USER" in limits and "RATE_REFRESHES_PER_USER" in limits
    assert limits <= set(LOOSE_LIMITS)
    loose = {k.lower(): v for k, v in LOOSE_LIMITS.items() if k.startswith("RATE_")}
    settings = GatewaySettings(dialogue_env="local", **loose)
    for name in limits:
        rate = getattr(settings, name.lower())
        assert (rate.capacity, rate.period) == (1_000_000, 1.0), name
