"""FerretDB 1.x: a MongoDB wire-protocol server on PostgreSQL, built from its Go module.

It stores in database `LOCAL_FERRETDB_DATABASE` of the `postgres` service (one schema per
MongoDB database, one table per collection), logged in as role `ferretdb`; the password
goes by the environment (PGPASSWORD), not the command line.

The build replaces one file of FerretDB's source, its object-lifetime tracking (a leak
check that records a stack trace for every iterator), with ferretdb_resource.go, which
tracks nothing; and FerretDB runs with GOGC=400 unless the environment sets GOGC. Both
only save CPU (docs/decisions.md, "FerretDB build").
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

from pymongo import MongoClient

from infra.local.downloads import build_once
from infra.local.gobuild import build_module_copy
from infra.local.service import Progress, Service

#: Our replacement for FerretDB's internal/util/resource/resource.go.
RESOURCE_GO = Path(__file__).with_name("ferretdb_resource.go")
#: Go's garbage collector target for FerretDB (100 by default): a heap up to five times
#: what it holds live (tens of MB), for about a quarter less time per document read.
GOGC = "400"


def _replaced() -> dict[str, str]:
    return {"internal/util/resource/resource.go": RESOURCE_GO.read_text()}


class FerretDB(Service):
    name = "ferretdb"
    marker = "ferretdb"
    requires = ("postgres",)

    @property
    def binary(self) -> Path:
        # Named by what the build replaces too, so that changing it builds again.
        digest = hashlib.sha256(repr(sorted(_replaced().items())).encode()).hexdigest()[:8]
        name = f"ferretdb-{self.settings.ferretdb_version}-{digest}"
        return self.settings.cache_dir / "bin" / name

    def provision(self, progress: Progress) -> None:
        # The build copies the module's source afresh, in the shared cache.
        version, cache = self.settings.ferretdb_version, self.settings.cache_dir
        build_once(self.binary, cache, self.name, progress, lambda: self._build(version, progress))

    def _build(self, version: str, progress: Progress) -> None:
        progress.step(self.name, f"building FerretDB {version} (Go module proxy)")
        build_module_copy(
            "github.com/FerretDB/FerretDB",
            version,
            "./cmd/ferretdb",
            self.binary,
            self.settings.cache_dir,
            {
                "build/version/version.txt": f"v{version}\n",
                "build/version/package.txt": "dialogue-platform-local\n",
            },
            replaced=_replaced(),
        )

    def prepare(self, progress: Progress) -> None:
        if (self.data_dir / "sqlite").exists():
            progress.step(
                self.name,
                f"{self.data_dir / 'sqlite'} (the former SQLite backend) is no longer used; "
                "remove it when you do not need its data",
            )

    def argv(self) -> list[str]:
        s = self.settings
        return [
            str(self.binary),
            f"--listen-addr={s.host}:{s.mongo_port}",
            "--handler=postgresql",
            f"--postgresql-url={s.ferretdb_postgres_url}",
            f"--state-dir={self.data_dir}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=warn",
        ]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.setdefault("GOGC", GOGC)
        return dict(env, PGPASSWORD=self.settings.postgres_password)

    def probe(self) -> None:
        # Nothing listening is answered at once, not after pymongo's server selection wait.
        socket.create_connection((self.settings.host, self.settings.mongo_port), 1.5).close()
        client: MongoClient[dict[str, object]] = MongoClient(
            self.settings.mongo_url, serverSelectionTimeoutMS=1500, connectTimeoutMS=1500
        )
        try:
            # Not just ping, which FerretDB answers without PostgreSQL: listing collections
            # makes it load its catalogue, so a wrong password or database shows here.
            client.admin.list_collection_names()
        finally:
            client.close()

    def endpoint(self) -> str:
        return self.settings.mongo_url
