"""A private Consul dev agent with ACLs on (default deny), as docker-compose runs it."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from infra.local import LocalSettings
from infra.local.consul import Consul
from infra.processes.private import consul_ports
from tests.support.waiting import eventually


@dataclass(frozen=True)
class AclConsul:
    url: str
    management_token: str

    def call(self, method: str, path: str, body: object = None, token: str | None = None) -> object:
        """One HTTP API call with the management token (or `token`)."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=None if body is None else orjson.dumps(body),
            method=method,
            headers={"X-Consul-Token": token or self.management_token},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            data = resp.read()
        return orjson.loads(data) if data else None

    def token(self, service: str, level: str) -> str:
        """A new token whose only right is `level` ("read"/"write") on `service` (+ node read)."""
        rules = (
            f'service "{service}" {{ policy = "{level}" }}\nnode_prefix "" {{ policy = "read" }}'
        )
        name = f"{service}-{level}-{uuid.uuid4().hex[:6]}"
        self.call("PUT", "/v1/acl/policy", {"Name": name, "Rules": rules})
        secret = str(uuid.uuid4())
        self.call("PUT", "/v1/acl/token", {"SecretID": secret, "Policies": [{"Name": name}]})
        return secret


def _start(run_dir: Path, cache_dir: Path) -> tuple[subprocess.Popen[bytes], AclConsul]:
    """Start the agent on free ports; its log is consul-acl.log in `run_dir`."""
    http, base = consul_ports()
    settings = LocalSettings.from_env(
        {
            "LOCAL_RUN_DIR": str(run_dir),
            "LOCAL_CACHE_DIR": str(cache_dir),
            "LOCAL_CONSUL_PORT": str(http),
            "LOCAL_CONSUL_BASE_PORT": str(base),
        }
    )
    management = str(uuid.uuid4())
    acl = (
        'acl { enabled = true, default_policy = "deny", '
        f'tokens {{ initial_management = "{management}", agent = "{management}" }} }}'
    )
    argv = [*Consul(settings).argv(), "-hcl", acl]
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "consul-acl.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=run_dir)
    return proc, AclConsul(settings.consul_url, management)


@contextlib.asynccontextmanager
async def acl_consul(run_dir: Path, cache_dir: Path) -> AsyncIterator[AclConsul]:
    """Consul with `acl { enabled = true, default_policy = "deny" }` on free ports."""
    proc, consul = _start(run_dir, cache_dir)

    def answers() -> bool:
        assert proc.poll() is None, f"Consul with ACLs exited: {run_dir / 'consul-acl.log'}"
        try:
            if not consul.call("GET", "/v1/status/leader"):
                return False
            consul.call("GET", "/v1/acl/token/self")
        except (urllib.error.URLError, ConnectionError):
            return False
        return True

    try:
        await eventually(lambda: asyncio.to_thread(answers), what="Consul with ACLs answering")
        yield consul
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 20)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
