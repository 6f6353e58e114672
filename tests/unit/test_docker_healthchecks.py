"""The health checks of docker-compose.yml: how often they run, and what the gateway's and
the worker's one-line checks decide when run against a fake endpoint, with the container's
http_proxy pointing at a proxy that must never be asked."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from dialogue_worker.entrypoints.http import Pong
from dialogue_worker.services.health import Status
from gateway.adapters.workers import pong_serves_reads

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
WORKER_URL, GATEWAY_URL = "127.0.0.1:8100", "127.0.0.1:8007"
TOKEN = "entrypoint-token-for-the-check"
#: Whose check execs a heavy program: mongosh (Node.js), Kafka's tools (a JVM).
HEAVY = {"cfg1", "mongos", *(f"shard{n}{m}" for n in (1, 2, 3) for m in "ab")}
HEAVY |= {"kafka-1", "kafka-2", "kafka-3"}


@pytest.fixture(scope="module")
def checks() -> dict[str, dict[str, Any]]:
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return {name: s["healthcheck"] for name, s in services.items() if "healthcheck" in s}


def seconds(duration: str) -> float:
    """A compose duration such as 30s, 2m or 1m30s."""
    match = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert match and duration, f"a duration in minutes and seconds, not {duration!r}"
    return 60.0 * int(match[1] or 0) + int(match[2] or 0)


def test_checks_run_often_while_starting_then_every_30_s(
    checks: dict[str, dict[str, Any]],
) -> None:
    """The interval used to be 5-10 s for the container's whole life: eight mongosh every
    5 s and three JVMs every 10 s, for ever."""
    assert HEAVY <= set(checks)
    for name, check in checks.items():
        interval, timeout = seconds(check["interval"]), seconds(check["timeout"])
        start_interval = seconds(check["start_interval"])
        start_period = seconds(check["start_period"])
        assert interval >= 30, name
        assert timeout < interval, name
        # Docker runs a check every start_interval only within start_period (and until
        # the first pass): without a period the fast interval never applies.
        assert 0 < start_interval <= 5 < start_period, name
        # A slow start is not called unhealthy (which fails `up --wait` and the services
        # waiting on it) within two minutes, as with the former settings.
        assert start_period + int(check["retries"]) * interval >= 120, name
    for name in HEAVY:
        assert seconds(checks[name]["start_interval"]) >= 3, name


def _python_checks(checks: dict[str, dict[str, Any]]) -> dict[str, str]:
    code = {}
    for name, check in checks.items():
        test = check["test"]
        if "python" in " ".join(test):
            assert test[:3] == ["CMD", "python", "-c"], name
            code[name] = test[3]
    return code


def test_no_check_opens_a_url_through_the_containers_proxy(
    checks: dict[str, dict[str, Any]],
) -> None:
    """Docker copies the client's proxy settings into containers, and Python's no_proxy
    does not understand 127.0.0.0/8: urlopen would send the check to the proxy."""
    code = _python_checks(checks)
    assert set(code) == {"gateway", "dialogue_worker"}
    for name, source in code.items():
        assert "urlopen" not in source, name
        assert ".build_opener(u.ProxyHandler({}))" in source, name


# --- the apps' checks run against fake endpoints --------------------------------------------


@dataclass
class Endpoint:
    """What the fake answers, and what it was asked."""

    status: int = 200
    body: bytes = b"{}"
    requests: list[tuple[str, str | None]] = field(default_factory=list)


@contextmanager
def _serve(endpoint: Endpoint) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            endpoint.requests.append((self.path, self.headers.get("Authorization")))
            self.send_response(endpoint.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(endpoint.body)))
            self.end_headers()
            self.wfile.write(endpoint.body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # a short poll: shutdown() waits for the loop to look (0.5 s by default)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def proxy() -> Iterator[tuple[str, Endpoint]]:
    """The proxy of the container's environment: it must never be asked (502 if it is)."""
    endpoint = Endpoint(status=502, body=b"{}")
    with _serve(endpoint) as address:
        yield address, endpoint


@pytest.fixture
def app() -> Iterator[tuple[str, Endpoint]]:
    endpoint = Endpoint()
    with _serve(endpoint) as address:
        yield address, endpoint


def run_check(source: str, proxy: str) -> subprocess.CompletedProcess[str]:
    """The check's `python -c` in a process with a container-like environment: the proxy
    settings Docker copies in, with the loopback exempted in CIDR form."""
    env = {
        "ENTRYPOINT_TOKEN": TOKEN,
        "http_proxy": f"http://{proxy}",
        "HTTP_PROXY": f"http://{proxy}",
        "no_proxy": "localhost,127.0.0.0/8",
        "NO_PROXY": "localhost,127.0.0.0/8",
    }
    return subprocess.run(
        [sys.executable, "-c", source], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_proxy_setting_here_would_catch_a_plain_urlopen(
    app: tuple[str, Endpoint], proxy: tuple[str, Endpoint]
) -> None:
    """The environment of these tests does reproduce the fault the opener avoids."""
    (address, _), (proxy_address, asked) = app, proxy
    plain = f"import urllib.request as u; u.urlopen('http://{address}/ready', timeout=3)"
    assert run_check(plain, proxy_address).returncode != 0
    assert asked.requests == [(f"http://{address}/ready", None)]


def _pong(status: str | None) -> bytes:
    if status is None:
        return b'{"object": "pong", "id": "w-1"}'
    reason = "mongodb unreachable: timed out" if status == Status.CRITICAL else None
    return Pong(id="w-1", status=status, reason=reason).model_dump_json().encode()


@pytest.mark.parametrize("status", [*(s.value for s in Status), "PASSING", "", "stopping", None])
def test_the_worker_is_healthy_when_its_ping_says_it_serves_reads(
    checks: dict[str, dict[str, Any]],
    app: tuple[str, Endpoint],
    proxy: tuple[str, Endpoint],
    status: str | None,
) -> None:
    """/ping answers 200 whatever the worker's health: the check reads the body and agrees
    with the gateway (passing and warning serve reads; critical, MongoDB lost, does not)."""
    (address, endpoint), (proxy_address, asked) = app, proxy
    endpoint.body = _pong(status)
    source = _python_checks(checks)["dialogue_worker"]
    assert WORKER_URL in source
    result = run_check(source.replace(WORKER_URL, address), proxy_address)
    assert (result.returncode == 0) == pong_serves_reads(endpoint.body), result.stderr
    assert (result.returncode == 0) == (status in ("passing", "warning"))
    assert endpoint.requests == [("/ping", f"Entrypoint {TOKEN}")]
    assert asked.requests == []
    if status == Status.CRITICAL:
        assert "worker critical: mongodb unreachable" in result.stderr


@pytest.mark.parametrize(("code", "body"), [(503, _pong("passing")), (200, b"not json")])
def test_the_worker_is_unhealthy_on_an_error_or_a_garbled_answer(
    checks: dict[str, dict[str, Any]],
    app: tuple[str, Endpoint],
    proxy: tuple[str, Endpoint],
    code: int,
    body: bytes,
) -> None:
    (address, endpoint), (proxy_address, asked) = app, proxy
    endpoint.status, endpoint.body = code, body
    source = _python_checks(checks)["dialogue_worker"].replace(WORKER_URL, address)
    assert run_check(source, proxy_address).returncode != 0
    assert len(endpoint.requests) == 1 and asked.requests == []


@pytest.mark.parametrize(("code", "healthy"), [(200, True), (503, False)])
def test_the_gateway_is_healthy_when_ready(
    checks: dict[str, dict[str, Any]],
    app: tuple[str, Endpoint],
    proxy: tuple[str, Endpoint],
    code: int,
    healthy: bool,
) -> None:
    (address, endpoint), (proxy_address, asked) = app, proxy
    endpoint.status = code
    endpoint.body = json.dumps({"object": "readiness", "ready": healthy}).encode()
    source = _python_checks(checks)["gateway"]
    assert GATEWAY_URL in source
    result = run_check(source.replace(GATEWAY_URL, address), proxy_address)
    assert (result.returncode == 0) == healthy, result.stderr
    assert [path for path, _ in endpoint.requests] == ["/ready"]
    assert asked.requests == []
