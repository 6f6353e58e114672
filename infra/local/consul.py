"""Consul dev agent with its UI, built from an MPL-2.0 release's Go module."""

from __future__ import annotations

import json
from pathlib import Path

from infra.local.downloads import build_once
from infra.local.gobuild import go_build, module_licenses, wrapper_module
from infra.local.service import LOCAL_HTTP, Progress, Service, ServiceError

PACKAGE = "github.com/hashicorp/consul"


class Consul(Service):
    name = "consul"
    marker = "agent -dev -ui"

    @property
    def binary(self) -> Path:
        return self.settings.cache_dir / "bin" / f"consul-{self.settings.consul_version}"

    def provision(self, progress: Progress) -> None:
        # Its wrapper module and output are shared by the clones using this cache.
        cache = self.settings.cache_dir
        build_once(self.binary, cache, self.name, progress, lambda: self._build(progress))

    def _build(self, progress: Progress) -> None:
        version, cache = self.settings.consul_version, self.settings.cache_dir
        progress.step(self.name, f"fetching Consul {version} modules (Go module proxy)")
        build = wrapper_module("github.com/hashicorp/consul", version, PACKAGE, cache)
        licences = module_licenses(build, PACKAGE, cache, "github.com/hashicorp/")
        (build / "hashicorp-licences.txt").write_text(
            "".join(f"{m}\t{lic}\n" for m, lic in sorted(licences.items()))
        )
        not_open = sorted(
            m for m, lic in licences.items() if lic in ("BUSL-1.1", "unknown", "no licence file")
        )
        if not_open:
            raise ServiceError(
                f"consul {version} pulls modules not under an open-source "
                f"licence: {', '.join(not_open)} (see {build}/hashicorp-licences.txt)"
            )
        progress.step(self.name, f"building Consul {version} (several minutes the first time)")
        # Old Consul code links to runtime internals that new Go refuses by default.
        go_build(build, PACKAGE, self.binary, cache, ldflags="-checklinkname=0")

    def argv(self) -> list[str]:
        s = self.settings
        base = s.consul_base_port
        return [
            str(self.binary),
            "agent",
            "-dev",
            "-ui",
            "-node",
            "dialogue-local",
            "-client",
            s.host,
            "-bind",
            s.host,
            "-advertise",
            s.host,
            "-http-port",
            str(s.consul_port),
            "-server-port",
            str(base),
            "-serf-lan-port",
            str(base + 1),
            "-serf-wan-port",
            str(base + 2),
            "-dns-port",
            str(base + 100),
            "-grpc-port",
            str(base + 202),
            "-grpc-tls-port",
            str(base + 203),
            "-log-level",
            "warn",
        ]

    def probe(self) -> None:
        with LOCAL_HTTP.open(f"{self.settings.consul_url}/v1/status/leader", timeout=2) as r:
            leader = json.loads(r.read())
        if not leader:
            raise ServiceError("consul has no leader yet")

    def endpoint(self) -> str:
        return f"{self.settings.consul_url} (UI at {self.settings.consul_url}/ui/)"
