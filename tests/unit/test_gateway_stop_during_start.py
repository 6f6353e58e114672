"""`python -m gateway` stopped while its start-up still waits for MySQL: it catches SIGTERM
from its first await, ends the start-up there and exits cleanly. It used to catch the
signal only once serving, so as a container's PID 1 (where a signal without a handler is
ignored) a stop during start-up waited out the grace period and ended in SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from gateway.settings import GatewaySettings

REPO = Path(__file__).resolve().parents[2]


def _gateway_waiting_for_mysql(port: int) -> subprocess.Popen[str]:
    """The gateway in local mode, retrying an unreachable MySQL for an hour."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in GatewaySettings.model_fields
    }
    env.update(
        DIALOGUE_ENV="local",
        LOG_LEVEL="INFO",
        MYSQL_HOST="127.0.0.1",
        MYSQL_PORT=str(port),
        MYSQL_CONNECT_WAIT="3600",
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT="0",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _messages(lines: list[str]) -> list[str]:
    return [json.loads(line)["msg"] for line in lines if line.startswith("{")]


def test_sigterm_while_start_up_waits_for_mysql_ends_it_cleanly(refusing_port: int) -> None:
    gateway = _gateway_waiting_for_mysql(refusing_port)
    try:
        assert gateway.stderr is not None
        seen: list[str] = []
        for line in gateway.stderr:  # until start-up is retrying (EOF if it exited)
            seen.append(line)
            if any(m.startswith("MySQL not reachable yet") for m in _messages([line])):
                break
        assert gateway.poll() is None, "".join(seen)
        gateway.send_signal(signal.SIGTERM)
        _, rest = gateway.communicate(timeout=60)
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()
    said = _messages(seen + rest.splitlines())
    assert gateway.returncode == 0, said  # not killed by the signal (-SIGTERM)
    assert "stopped during start-up" in said
    assert not any(m.startswith("serving on") for m in said)
