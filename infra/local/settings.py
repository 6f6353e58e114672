"""Settings of the local infrastructure, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def env_int(env: dict[str, str], name: str, default: int) -> int:
    """env[name] as an int, default when unset or empty; a readable exit when not a number."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from exc


@dataclass(frozen=True)
class LocalSettings:
    """Where the local services listen and keep their files.

    Every field has an environment variable (in brackets) and a default.
    """

    host: str  # [LOCAL_HOST] address every service binds to; loopback only
    run_dir: Path  # [LOCAL_RUN_DIR] data, logs and pid files (git-ignored)
    cache_dir: Path  # [LOCAL_CACHE_DIR] built binaries and jars, shared by clones
    kafka_port: int  # [LOCAL_KAFKA_PORT] Kafka client listener
    kafka_controller_port: int  # [LOCAL_KAFKA_CONTROLLER_PORT] KRaft controller listener
    consul_port: int  # [LOCAL_CONSUL_PORT] Consul HTTP API and UI
    consul_base_port: int  # [LOCAL_CONSUL_BASE_PORT] first of Consul's 4 internal ports
    mongo_port: int  # [LOCAL_MONGO_PORT] FerretDB (MongoDB wire protocol)
    mysql_port: int  # [LOCAL_MYSQL_PORT] MariaDB
    mysql_user: str  # [LOCAL_MYSQL_USER] project user created in MariaDB
    mysql_password: str  # [LOCAL_MYSQL_PASSWORD] its password (local mode only)
    mysql_database: str  # [LOCAL_MYSQL_DATABASE] project database
    kafka_version: str  # [LOCAL_KAFKA_VERSION] Apache Kafka release (Maven Central)
    consul_version: str  # [LOCAL_CONSUL_VERSION] Consul release (MPL-2.0 only)
    ferretdb_version: str  # [LOCAL_FERRETDB_VERSION] FerretDB release

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LocalSettings:
        e = dict(os.environ if env is None else env)
        host = e.get("LOCAL_HOST", "127.0.0.1")
        if not host.startswith("127.") and host not in ("localhost", "::1"):
            raise SystemExit(f"LOCAL_HOST must be a loopback address, got {host!r}")
        cache_default = Path(e.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dialogue-platform"
        return cls(
            host=host,
            run_dir=Path(e.get("LOCAL_RUN_DIR", REPO_ROOT / ".run")).resolve(),
            cache_dir=Path(e.get("LOCAL_CACHE_DIR", cache_default)).resolve(),
            kafka_port=env_int(e, "LOCAL_KAFKA_PORT", 9092),
            kafka_controller_port=env_int(e, "LOCAL_KAFKA_CONTROLLER_PORT", 9093),
            consul_port=env_int(e, "LOCAL_CONSUL_PORT", 8500),
            consul_base_port=env_int(e, "LOCAL_CONSUL_BASE_PORT", 8300),
            mongo_port=env_int(e, "LOCAL_MONGO_PORT", 27017),
            mysql_port=env_int(e, "LOCAL_MYSQL_PORT", 3306),
            mysql_user=e.get("LOCAL_MYSQL_USER", "dialogue"),
            mysql_password=e.get("LOCAL_MYSQL_PASSWORD", "dialogue-local"),
            mysql_database=e.get("LOCAL_MYSQL_DATABASE", "dialogue"),
            kafka_version=e.get("LOCAL_KAFKA_VERSION", "4.1.1"),
            consul_version=e.get("LOCAL_CONSUL_VERSION", "1.14.11"),
            ferretdb_version=e.get("LOCAL_FERRETDB_VERSION", "1.24.2"),
        )

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def consul_url(self) -> str:
        return f"http://{self.host}:{self.consul_port}"

    @property
    def mongo_url(self) -> str:
        return f"mongodb://{self.host}:{self.mongo_port}/"

    @property
    def mysql_socket(self) -> Path:
        return self.run_dir / "mariadb" / "mariadb.sock"
