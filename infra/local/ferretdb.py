"""FerretDB 1.x: a MongoDB wire-protocol server on PostgreSQL, built from its Go module.

It stores in database `LOCAL_FERRETDB_DATABASE` of the `postgres` service (one schema per
MongoDB database, one table per collection), logged in as role `ferretdb`; the password
goes by the environment (PGPASSWORD), not the command line.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pymongo import MongoClient

from infra.local.downloads import build_once
from infra.local.gobuild import build_module_copy
from infra.local.service import Progress, Service


class FerretDB(Service):
    name = "ferretdb"
    marker = "ferretdb"
    requires = ("postgres",)

    @property
    def binary(self) -> Path:
        return self.settings.cache_dir / "bin" / f"ferretdb-{self.settings.ferretdb_version}"

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
