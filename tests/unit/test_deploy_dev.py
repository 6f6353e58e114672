"""infra/dev without processes: settings from the environment, the services' settings it
hands out, the worker plan of `scale`, the state file and the printed curl example."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from dialogue_worker.settings import WorkerSettings
from gateway.settings import GatewaySettings
from infra.dev.demo import ALICE, curl_example
from infra.dev.platform import plan_workers
from infra.dev.settings import DevSettings
from infra.dev.state import DevState

ENV = {"LOCAL_RUN_DIR": "/tmp/dev-test-run", "LOCAL_CACHE_DIR": "/tmp/dev-test-cache"}


def test_defaults_are_the_documented_ports_and_names() -> None:
    s = DevSettings.from_env(ENV)
    assert s.api_url == "http://127.0.0.1:8007"
    assert s.consul_url == "http://127.0.0.1:8500"
    assert s.run_dir == Path("/tmp/dev-test-run/dev")
    assert [s.worker_port(i) for i in (1, 2, 3)] == [8100, 8101, 8102]
    assert [s.service_id(i) for i in (1, 2)] == ["dev-worker-1", "dev-worker-2"]
    assert (s.topic, s.partitions, s.app_id, s.mongo_db) == (
        "dialogue.messages",
        12,
        "dialogue-worker",
        "dialogue",
    )


def test_every_port_and_name_can_be_overridden() -> None:
    s = DevSettings.from_env(
        {
            **ENV,
            "DEV_RUN_DIR": "/tmp/other",
            "DEV_GATEWAY_PORT": "18007",
            "DEV_WORKER_BASE_PORT": "18100",
            "DEV_CONSUL_URL": "http://127.0.0.1:18500/",
            "DEV_TOPIC": "t",
            "DEV_APP_ID": "g",
            "DEV_MONGO_DB": "d",
            "DEV_ID_PREFIX": "copy",
        }
    )
    assert (s.api_url, s.consul_url, s.run_dir) == (
        "http://127.0.0.1:18007",
        "http://127.0.0.1:18500",
        Path("/tmp/other"),
    )
    assert (s.worker_port(2), s.service_id(2)) == (18101, "copy-2")
    assert s.worker_env(2)["CONSUL_URL"] == s.gateway_env()["CONSUL_URL"] == s.consul_url
    assert s.worker_env(2)["WORKER_APP_ID"] == s.gateway_env()["WORKER_APP_ID"]


def test_a_bad_port_is_refused_with_its_name() -> None:
    with pytest.raises(SystemExit, match="DEV_GATEWAY_PORT"):
        DevSettings.from_env({**ENV, "DEV_GATEWAY_PORT": "http"})


def test_the_services_accept_the_settings_they_are_given(monkeypatch: pytest.MonkeyPatch) -> None:
    s = DevSettings.from_env(ENV)
    for env, model in ((s.worker_env(3), WorkerSettings), (s.gateway_env(), GatewaySettings)):
        unknown = {k for k in env if k.lower() not in model.model_fields}
        assert not unknown, f"{unknown} are not settings of {model.__name__}"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
    worker, gateway = WorkerSettings(), GatewaySettings()
    assert (worker.worker_port, worker.service_id, worker.advertise_host) == (
        8102,
        "dev-worker-3",
        "127.0.0.1",
    )
    assert gateway.local and gateway.gateway_host == "127.0.0.1"
    assert worker.topic == gateway.topic and worker.consul_url == gateway.consul_url
    # Both sides fall back to the same local entrypoint token.
    assert gateway.secret("entrypoint_token") == worker.entrypoint_token.get_secret_value()
    assert s.gateway_env()["MYSQL_PASSWORD"] == "dialogue-local"


@pytest.mark.parametrize(
    ("current", "wanted", "plan"),
    [
        ([], 2, ([], [], [1, 2])),
        ([1, 2], 3, ([1, 2], [], [3])),
        ([1, 2, 3], 2, ([1, 2], [3], [])),
        ([1, 3], 3, ([1, 3], [], [2])),
        ([1, 2, 3], 0, ([], [1, 2, 3], [])),
        ([2, 1], 2, ([1, 2], [], [])),
    ],
)
def test_scaling_removes_the_newest_and_fills_gaps(
    current: list[int], wanted: int, plan: tuple[list[int], list[int], list[int]]
) -> None:
    assert plan_workers(current, wanted) == plan


def test_state_survives_a_round_trip_and_a_missing_file(tmp_path: Path) -> None:
    assert DevState.load(tmp_path) == DevState()
    DevState(infra_started=["kafka"], workers=[2, 1], demo_chat="abc").save(tmp_path)
    assert DevState.load(tmp_path) == DevState(["kafka"], [1, 2], "abc")
    (tmp_path / "state.json").write_text("{broken")
    assert DevState.load(tmp_path) == DevState()


def test_the_curl_example_is_three_valid_shell_lines() -> None:
    lines = curl_example("http://127.0.0.1:8007", "6b09efabc53ed4e0ac355646")
    assert len(lines) == 3
    first = shlex.split(lines[0].removeprefix("TOKEN=$(").removesuffix(")"))
    body = json.loads(first[first.index("-d") + 1])
    assert body == {"username": ALICE[0], "password": ALICE[1]}
    assert "/v1/chats/6b09efabc53ed4e0ac355646/messages" in lines[1]
    assert json.loads(shlex.split(lines[1])[-1]) == {"txt": "hello from curl"}
    assert '"Authorization: Bearer $TOKEN"' in lines[2]
    bash = shutil.which("bash")
    if bash:
        subprocess.run([bash, "-n", "-c", "\n".join(lines)], check=True)
