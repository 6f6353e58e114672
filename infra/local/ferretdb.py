"""FerretDB 1.x: a MongoDB wire-protocol server on SQLite, built from its Go module."""

from __future__ import annotations

from pathlib import Path

from pymongo import MongoClient

from infra.local.gobuild import build_module_copy
from infra.local.service import Progress, Service


class FerretDB(Service):
    name = "ferretdb"
    marker = "ferretdb"

    @property
    def binary(self) -> Path:
        return self.settings.cache_dir / "bin" / f"ferretdb-{self.settings.ferretdb_version}"

    def provision(self, progress: Progress) -> None:
        if self.binary.exists():
            return
        version = self.settings.ferretdb_version
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
        (self.data_dir / "sqlite").mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        s = self.settings
        return [
            str(self.binary),
            f"--listen-addr={s.host}:{s.mongo_port}",
            "--handler=sqlite",
            f"--sqlite-url=file:{self.data_dir / 'sqlite'}/",
            f"--state-dir={self.data_dir}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=warn",
        ]

    def probe(self) -> None:
        client: MongoClient[dict[str, object]] = MongoClient(
            self.settings.mongo_url, serverSelectionTimeoutMS=1500, connectTimeoutMS=1500
        )
        try:
            client.admin.command("ping")
        finally:
            client.close()

    def endpoint(self) -> str:
        return self.settings.mongo_url
