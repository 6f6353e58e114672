"""What `python -m infra.dev` reports when a command fails or is interrupted, and the
gateway's admin view refusing make dev's token: readable lines, no traceback."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from infra.dev import __main__ as cli
from infra.dev import platform as dev_platform
from infra.dev.http import Answer
from infra.dev.platform import DevError, DevPlatform, DevStatus
from infra.dev.settings import DevSettings
from infra.dev.state import DevState
from infra.local.process import ProcessError
from infra.local.service import ServiceError


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCAL_RUN_DIR", str(tmp_path))
    monkeypatch.setenv("LOCAL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DEV_RUN_DIR", raising=False)
    return tmp_path


def _answering(answer: Answer) -> Any:
    def call(method: str, url: str, **_: object) -> Answer:
        return answer

    return call


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_admin_token_is_an_error_naming_the_status(
    status: int, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dev_platform, "call", _answering(Answer(status, {"code": 4011})))
    with pytest.raises(DevError, match=rf"admin token refused \({status}\)"):
        DevPlatform(DevSettings.from_env()).routed()


@pytest.mark.parametrize("status", [429, 503])
def test_a_busy_admin_view_counts_as_nothing_routed_yet(
    status: int, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a refused token is final; any other answer is "nothing routed yet", which the
    wait asks again until its own deadline."""
    monkeypatch.setattr(dev_platform, "call", _answering(Answer(status, {"code": "5030"})))
    assert DevPlatform(DevSettings.from_env()).routed() == {}


def test_the_admin_view_lists_the_routed_ids(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {
        "object": "list",
        "data": [
            {"id": "dev-worker-1", "url": "http://127.0.0.1:8101"},
            {"id": "dev-worker-2", "url": "http://127.0.0.1:8102"},
        ],
    }
    monkeypatch.setattr(dev_platform, "call", _answering(Answer(200, body)))
    routed = DevPlatform(DevSettings.from_env()).routed()
    assert routed == {"dev-worker-1": 8101, "dev-worker-2": 8102}


def _consul_and_gateway(entries: list[dict[str, Any]], routed: list[dict[str, str]]) -> Any:
    def call(method: str, url: str, **_: object) -> Answer:
        if "/v1/health/service/" in url:
            return Answer(200, [{"Service": e} for e in entries])
        return Answer(200, {"object": "list", "data": routed})

    return call


@pytest.mark.parametrize(
    ("port", "started", "ready"),
    [
        (None, "2020-01-01T00:00:00.000+00:00", False),  # the SIGKILLed predecessor's
        (1, None, False),  # another copy's worker under the same id, at its own port
        (None, None, True),  # registered by the worker this command started
    ],
)
def test_a_restarted_worker_counts_only_by_its_own_registration(
    port: int | None,
    started: str | None,
    ready: bool,
    run_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker make dev restarted counted as ready by the registration its dead
    predecessor left passing (for up to its TTL), or by another copy's worker at the same
    id: make dev said "up" while the new process was still starting."""
    settings = DevSettings.from_env()
    platform = DevPlatform(settings)
    own = settings.worker_port(1)
    platform._started[1] = datetime.now(UTC).replace(microsecond=0)
    entry = {
        "ID": settings.service_id(1),
        "Port": own + (port or 0),
        "Meta": {"started": started or datetime.now(UTC).isoformat(timespec="milliseconds")},
    }
    routed = [{"id": settings.service_id(1), "url": f"http://127.0.0.1:{own + (port or 0)}"}]
    monkeypatch.setattr(dev_platform, "call", _consul_and_gateway([entry], routed))
    assert platform._serving(1, platform.passing(), platform.routed()) is ready


@pytest.mark.parametrize(
    "error", [ProcessError("worker-2 (pid 7) survived SIGKILL"), ServiceError("consul: gone")]
)
def test_down_reports_a_process_it_could_not_stop(
    error: Exception,
    run_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def down(self: DevPlatform) -> list[str]:
        raise error

    monkeypatch.setattr(DevPlatform, "down", down)
    assert cli.main(["down"]) == 1
    err = capsys.readouterr().err
    assert f"infra.dev down failed: {error}" in err
    assert "make dev-down" in err and "Traceback" not in err


def test_ctrl_c_during_up_says_how_to_stop_what_was_started(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def up(self: DevPlatform, workers: int | None = None) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(DevPlatform, "up", up)
    assert cli.main(["up"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "`make dev-down` stops what was started" in err


@pytest.mark.parametrize(
    ("argv", "env", "said"),
    [
        (["scale", "60000"], {}, "the worker count must be 0 .. 64"),
        (["scale", "-1"], {}, "the worker count must be 0 .. 64"),
        (["up", "--workers", "0"], {}, "the worker count must be 1 .. 64"),
        (["up", "--workers", "3"], {"DEV_WORKER_BASE_PORT": "65534"}, "would listen on port 65536"),
    ],
)
def test_a_worker_count_the_machine_cannot_run_is_refused_before_anything_starts(
    run_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: dict[str, str],
    said: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def never(self: DevPlatform, *args: object) -> None:
        raise AssertionError("started")

    monkeypatch.setattr(DevPlatform, "up", never)
    monkeypatch.setattr(DevPlatform, "scale", never)
    with pytest.raises(SystemExit) as refused:
        cli.main(argv)
    assert refused.value.code == 2 and said in capsys.readouterr().err


@pytest.mark.parametrize("name", ["DEV_GATEWAY_PORT", "DEV_WORKER_BASE_PORT"])
@pytest.mark.parametrize("port", ["0", "65536", "99999"])
def test_a_port_out_of_range_is_a_readable_exit(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, name: str, port: str
) -> None:
    monkeypatch.setenv(name, port)
    with pytest.raises(SystemExit, match=f"{name} must be a TCP port"):
        DevSettings.from_env()


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), ServiceError("kafka: not ready")])
def test_infrastructure_an_interrupted_up_left_running_is_recorded_for_down(
    interrupt: BaseException, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stack.up stops what it started when it fails; what it could not stop is recorded."""

    class Interrupted:
        def __init__(self, settings: object, progress: object) -> None:
            self.started: list[str] = []

        def up(self) -> list[str]:
            self.started.append("kafka")
            raise interrupt

    monkeypatch.setattr(dev_platform, "Stack", Interrupted)
    settings = DevSettings.from_env()
    with pytest.raises((KeyboardInterrupt, DevError)):
        DevPlatform(settings).up()
    assert DevState.load(settings.run_dir).infra_started == ["kafka"]


def test_the_summary_says_where_postgresqls_log_is_when_it_is_elsewhere(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status = DevStatus(gateway_pid=1, gateway_ready=True, workers=[], demo_chat=None)
    monkeypatch.setenv("LOCAL_POSTGRES_RUN_DIR", str(run_dir))
    assert "PostgreSQL:" not in cli.summary(DevSettings.from_env(), status, 1.0)
    monkeypatch.setenv("LOCAL_POSTGRES_RUN_DIR", str(run_dir / "pg"))
    text = cli.summary(DevSettings.from_env(), status, 1.0)
    assert f"(PostgreSQL: {run_dir / 'pg'}/postgres.log)" in text
