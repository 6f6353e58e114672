"""infra/dev/http.py and infra/local's Consul probe: a probe of 127.0.0.1 reaches it even
when http_proxy is set."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from infra.dev.http import Answer, call
from infra.local import LocalSettings
from infra.local.consul import Consul


class _Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        leader = self.path == "/v1/status/leader"
        body = json.dumps("127.0.0.1:8300" if leader else {"path": self.path}).encode()
        self.send_response(200 if self.path == "/ready" or leader else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def no_proxy_named(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # discard port: nothing answers


@pytest.fixture
def local_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_a_proxy_in_the_environment_is_not_used(local_server: str, no_proxy_named: None) -> None:
    assert call("GET", f"{local_server}/ready", timeout=5) == Answer(200, {"path": "/ready"})
    assert call("GET", f"{local_server}/other", timeout=5).status == 404


def test_the_consul_probe_of_infra_local_does_not_use_it_either(
    local_server: str, no_proxy_named: None
) -> None:
    port = local_server.rsplit(":", 1)[1]
    Consul(LocalSettings.from_env({"LOCAL_CONSUL_PORT": port})).probe()  # raises if not
