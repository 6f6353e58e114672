"""A private Consul dev agent with ACLs on (default deny), as docker-compose runs it."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from infra.local import LocalSettings
from infra.local.consul import Consul
from infra.processes.private import consul_ports


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


@contextlib.contextmanager
def acl_consul(run_dir: Path, cache_dir: Path) -> Iterator[AclConsul]:
    """Consul with `acl { enabled = true, default_policy = "deny" }` on free ports."""
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
    consul = AclConsul(settings.consul_url, management)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if consul.call("GET", "/v1/status/leader"):
                    consul.call("GET", "/v1/acl/token/self")
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"Consul with ACLs did not start: {run_dir / 'consul-acl.log'}")
            time.sleep(0.2)
        yield consul
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
