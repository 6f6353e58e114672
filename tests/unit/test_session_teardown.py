"""A test session leaves the infrastructure it started running while `make dev` uses it.

`make dev` started on infrastructure it found running records nothing to stop; the test
session that had started it used to stop it at its end, under the running gateway and
workers. The gateway here is a stand-in process recorded where `make dev` records its
gateway (DEV_RUN_DIR), as `make dev` does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from infra.dev.platform import DevPlatform
from tests.conftest import _used_by_make_dev
from tests.support.local_infra import SLEEPER


def test_the_infrastructure_stays_while_make_devs_gateway_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEV_RUN_DIR", str(tmp_path))
    assert not _used_by_make_dev()
    gateway = DevPlatform().gateway()
    pid = gateway.start([sys.executable, "-c", SLEEPER], cwd=tmp_path)
    try:
        assert _used_by_make_dev()
        assert f"make dev's gateway (pid {pid}) uses it" in capsys.readouterr().err
    finally:
        gateway.stop(timeout=10)
    assert not _used_by_make_dev()
