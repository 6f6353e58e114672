"""Settings of the local infrastructure, read once from the environment."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import pwd
import re
import stat
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Names infra/local gives PostgreSQL objects it makes from settings: no quoting needed.
PG_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
PG_RESERVED = ("postgres", "template0", "template1")
#: MariaDB names infra/local makes from settings: no quoting needed in SQL or grants.
MYSQL_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
MYSQL_DATABASE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Accounts the server has or infra/local keeps (besides the OS user's, see mysql_user).
MYSQL_RESERVED_USERS = ("root", "mysql", "mariadb.sys", "public")
MYSQL_RESERVED_DATABASES = ("mysql", "information_schema", "performance_schema", "sys")
#: The OS user PostgreSQL runs as when the stack runs as root (Debian's package makes it).
POSTGRES_OS_USER = "postgres"
#: Where PostgreSQL's folder goes as root when the run folder is out of that user's reach.
SHARED_TMP = Path("/var/tmp")
#: Port distance between the nodes of a local Kafka cluster.
KAFKA_PORT_STEP = 10
#: Node counts infra/local runs Kafka with: one node, or a cluster that survives one loss.
KAFKA_NODE_COUNTS = (1, 3)


#: The highest port a service takes above its setting: Consul's gRPC TLS port is
#: LOCAL_CONSUL_BASE_PORT + 203; Kafka's third node listens 2 * KAFKA_PORT_STEP above.
CONSUL_PORTS_ABOVE_BASE = 203
PORT_MAX = 65535


def env_int(
    env: dict[str, str], name: str, default: int, low: int = 0, high: int = 2**31 - 1
) -> int:
    """env[name] as an int in low..high, default when unset or empty; a readable exit
    otherwise. ASCII digits only: `int()` also reads other scripts' digits ("٣٣٠٦")
    and underscores ("3_306"), which no other program reading these settings does."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,10}", raw.strip()):
        raise SystemExit(f"{name} must be an integer, got {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise SystemExit(f"{name} must be {low} .. {high}, got {value}")
    return value


def env_port(env: dict[str, str], name: str, default: int, above: int = 0) -> int:
    """A TCP port setting; `above`: how many ports over it the service also takes."""
    port = env_int(env, name, default, -(2**31), 2**31 - 1)
    if not 1 <= port <= PORT_MAX - above:
        room = f" (the service also takes the {above} ports above it)" if above else ""
        raise SystemExit(f"{name} must be a TCP port, 1 .. {PORT_MAX - above}{room}; got {port}")
    return port


def refuse_undecodable(env: dict[str, str], prefixes: tuple[str, ...]) -> None:
    """A readable exit for a variable of these prefixes whose bytes are not UTF-8 (Python
    reads them as lone surrogates, which failed later with a traceback: a LOCAL_RUN_DIR
    such as that broke every infra command, `--help` and `make infra-down` included)."""
    for name, value in sorted(env.items()):
        if name.startswith(prefixes):
            try:
                value.encode()
            except UnicodeEncodeError:
                raise SystemExit(
                    f"{name} is not valid UTF-8 (the environment holds bytes that are not)"
                ) from None


def os_user() -> str:
    """The name of the OS user running the stack (KeyError: a uid without a passwd
    entry, as in some containers)."""
    return pwd.getpwuid(os.geteuid()).pw_name


def mysql_user(name: str) -> str:
    """LOCAL_MYSQL_USER, checked: a plain name, and no account the server or the stack
    needs (the OS user's is the socket superuser; the project user loses server rights)."""
    try:
        taken = {*MYSQL_RESERVED_USERS, os_user().lower()}
    except KeyError:
        taken = set(MYSQL_RESERVED_USERS)
    if name.lower() in taken:
        raise SystemExit(
            f"LOCAL_MYSQL_USER cannot be {name!r}: that account is the server's or the "
            f"superuser's (not {', '.join(sorted(taken))}); choose another name"
        )
    if not MYSQL_USER.fullmatch(name):
        raise SystemExit(
            f"LOCAL_MYSQL_USER must be a plain MariaDB user name ({MYSQL_USER.pattern}), "
            f"got {name!r}"
        )
    return name


def mysql_database(name: str) -> str:
    """LOCAL_MYSQL_DATABASE, checked: a plain name, and no system database."""
    if not MYSQL_DATABASE.fullmatch(name) or name.lower() in MYSQL_RESERVED_DATABASES:
        raise SystemExit(
            "LOCAL_MYSQL_DATABASE must be a plain MariaDB database name "
            f"({MYSQL_DATABASE.pattern}, not {', '.join(MYSQL_RESERVED_DATABASES)}), "
            f"got {name!r}"
        )
    return name


def postgres_fallback_dir(run_dir: Path) -> Path:
    """PostgreSQL's run folder as root when `run_dir` is out of its OS user's reach:
    one per run folder (a short hash of its path names it)."""
    digest = hashlib.sha1(str(run_dir).encode(), usedforsecurity=False).hexdigest()[:8]
    return SHARED_TMP / f"dialogue-platform-{digest}"


def _postgres_run_dir(configured: str | None, run_dir: Path) -> Path:
    """LOCAL_POSTGRES_RUN_DIR, else the run folder, unless we are root and the `postgres`
    user (which the server runs as) cannot reach it: a clone under /root (mode 700)."""
    if configured:
        return Path(configured).resolve()
    if os.geteuid() != 0:
        return run_dir
    fallback = postgres_fallback_dir(run_dir)
    if (fallback / "postgres").exists():
        return fallback  # where the cluster already is, reachable or not now
    try:
        user = pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        # Not installed yet (provisioning installs it, after this choice): Debian's
        # system user owns none of these folders and is in none of root's groups.
        return run_dir if searchable(run_dir, -1, set()) else fallback
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    return run_dir if searchable(run_dir, user.pw_uid, groups) else fallback


def searchable(path: Path, uid: int, gids: set[int]) -> bool:
    """Whether user `uid` (in groups `gids`) can pass through every existing folder of
    `path` and `path` itself (by the mode bits; ACLs are not read)."""
    for folder in [*reversed(path.parents), path]:
        try:
            info = folder.stat()
        except FileNotFoundError:
            # Created later, by this process: with the mode its umask leaves (found in
            # review: under umask 027 or 077 root made the run folder 750 or 700, out of
            # the postgres user's reach, and `infra-up` stopped).
            mode = 0o777 & ~current_umask()
            if uid == os.geteuid():
                return bool(mode & stat.S_IXUSR)
            return bool(mode & (stat.S_IXGRP if os.getegid() in gids else stat.S_IXOTH))
        if info.st_uid == uid:
            bit = stat.S_IXUSR
        elif info.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def current_umask() -> int:
    """This process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def local_host(host: str) -> str:
    """LOCAL_HOST, checked: an IPv4 loopback address (127.0.0.0/8) written out. Every
    service binds to it and every URL is made of it: "::1" would need brackets in them
    (Consul's, MongoDB's, Kafka's listeners), and a host name may resolve elsewhere."""
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise SystemExit(
            "LOCAL_HOST must be an IPv4 loopback address (127.0.0.0/8, such as 127.0.0.1), "
            f"got {host!r}"
        )
    return host


def _kafka_nodes(count: int) -> int:
    if count not in KAFKA_NODE_COUNTS:
        raise SystemExit(f"LOCAL_KAFKA_NODES must be 1 or 3, got {count}")
    return count


@dataclass(frozen=True)
class LocalSettings:
    """Where the local services listen and keep their files.

    Every field has an environment variable (in brackets) and a default.
    """

    host: str  # [LOCAL_HOST] address every service binds to: IPv4 loopback (127.0.0.0/8)
    run_dir: Path  # [LOCAL_RUN_DIR] data, logs and pid files (git-ignored)
    cache_dir: Path  # [LOCAL_CACHE_DIR] built binaries and jars, shared by clones
    kafka_port: int  # [LOCAL_KAFKA_PORT] Kafka client listener (of node 1)
    kafka_controller_port: int  # [LOCAL_KAFKA_CONTROLLER_PORT] KRaft controller listener (node 1)
    kafka_nodes: int  # [LOCAL_KAFKA_NODES] 1, or 3 for a replicated cluster (RF 3, min ISR 2)
    consul_port: int  # [LOCAL_CONSUL_PORT] Consul HTTP API and UI
    consul_base_port: int  # [LOCAL_CONSUL_BASE_PORT] first of Consul's 4 internal ports
    mongo_port: int  # [LOCAL_MONGO_PORT] FerretDB (MongoDB wire protocol)
    postgres_port: int  # [LOCAL_POSTGRES_PORT] PostgreSQL, FerretDB's storage
    postgres_password: str  # [LOCAL_POSTGRES_PASSWORD] FerretDB's role in it (local only)
    # [LOCAL_POSTGRES_RUN_DIR] its cluster, socket, log (default: run_dir; as root, when the
    # postgres user cannot reach run_dir, /var/tmp/dialogue-platform-<hash of run_dir>)
    postgres_run_dir: Path
    ferretdb_database: str  # [LOCAL_FERRETDB_DATABASE] PostgreSQL database FerretDB stores in
    mysql_port: int  # [LOCAL_MYSQL_PORT] MariaDB
    mysql_user: str  # [LOCAL_MYSQL_USER] project user created in MariaDB
    mysql_password: str  # [LOCAL_MYSQL_PASSWORD] its password (local mode only; empty: default)
    mysql_database: str  # [LOCAL_MYSQL_DATABASE] project database
    kafka_version: str  # [LOCAL_KAFKA_VERSION] Apache Kafka release (Maven Central)
    consul_version: str  # [LOCAL_CONSUL_VERSION] Consul release (MPL-2.0 only)
    ferretdb_version: str  # [LOCAL_FERRETDB_VERSION] FerretDB release

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> LocalSettings:
        e = dict(os.environ if env is None else env)
        refuse_undecodable(e, ("LOCAL_", "DEV_", "XDG_CACHE_HOME"))
        host = local_host(e.get("LOCAL_HOST", "127.0.0.1"))
        # An empty folder or version is unset, as in the shell's ${VAR:-default}: read
        # as a path, "" is the current directory (the repository, under make).
        cache_home = Path(e.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        cache_default = cache_home / "dialogue-platform"
        run_dir = Path(e.get("LOCAL_RUN_DIR") or REPO_ROOT / ".run").resolve()
        ferretdb_database = e.get("LOCAL_FERRETDB_DATABASE") or "ferretdb"
        if not PG_NAME.fullmatch(ferretdb_database) or ferretdb_database in PG_RESERVED:
            raise SystemExit(
                "LOCAL_FERRETDB_DATABASE must be a lower-case PostgreSQL name "
                f"({PG_NAME.pattern}, not {', '.join(PG_RESERVED)}), got {ferretdb_database!r}"
            )
        return cls(
            host=host,
            run_dir=run_dir,
            cache_dir=Path(e.get("LOCAL_CACHE_DIR") or cache_default).resolve(),
            kafka_port=env_port(e, "LOCAL_KAFKA_PORT", 9092, above=2 * KAFKA_PORT_STEP),
            kafka_controller_port=env_port(
                e, "LOCAL_KAFKA_CONTROLLER_PORT", 9093, above=2 * KAFKA_PORT_STEP
            ),
            kafka_nodes=_kafka_nodes(env_int(e, "LOCAL_KAFKA_NODES", 1)),
            consul_port=env_port(e, "LOCAL_CONSUL_PORT", 8500),
            consul_base_port=env_port(
                e, "LOCAL_CONSUL_BASE_PORT", 8300, above=CONSUL_PORTS_ABOVE_BASE
            ),
            mongo_port=env_port(e, "LOCAL_MONGO_PORT", 27017),
            postgres_port=env_port(e, "LOCAL_POSTGRES_PORT", 5433),
            postgres_password=e.get("LOCAL_POSTGRES_PASSWORD") or "ferretdb-local",
            postgres_run_dir=_postgres_run_dir(e.get("LOCAL_POSTGRES_RUN_DIR"), run_dir),
            ferretdb_database=ferretdb_database,
            mysql_port=env_port(e, "LOCAL_MYSQL_PORT", 3306),
            mysql_user=mysql_user(e.get("LOCAL_MYSQL_USER", "dialogue")),
            # Empty is unset, as for the gateway, which takes an empty MYSQL_PASSWORD for
            # unset and uses this default: MariaDB must be given the same one.
            mysql_password=e.get("LOCAL_MYSQL_PASSWORD") or "dialogue-local",
            mysql_database=mysql_database(e.get("LOCAL_MYSQL_DATABASE", "dialogue")),
            kafka_version=e.get("LOCAL_KAFKA_VERSION") or "4.1.1",
            consul_version=e.get("LOCAL_CONSUL_VERSION") or "1.14.11",
            ferretdb_version=e.get("LOCAL_FERRETDB_VERSION") or "1.24.2",
        )

    def kafka_ports(self, node: int) -> tuple[int, int]:
        """(client, controller) port of a Kafka node (1-based): node 1 on the set ports,
        each next one KAFKA_PORT_STEP above."""
        step = KAFKA_PORT_STEP * (node - 1)
        return self.kafka_port + step, self.kafka_controller_port + step

    @property
    def kafka_bootstrap(self) -> str:
        """Every node's client address, comma-separated (what KAFKA_BOOTSTRAP takes)."""
        nodes = range(1, self.kafka_nodes + 1)
        return ",".join(f"{self.host}:{self.kafka_ports(n)[0]}" for n in nodes)

    @property
    def consul_url(self) -> str:
        return f"http://{self.host}:{self.consul_port}"

    @property
    def mongo_url(self) -> str:
        return f"mongodb://{self.host}:{self.mongo_port}/"

    @property
    def postgres_socket_dir(self) -> Path:
        """Where PostgreSQL's unix socket is: the superuser's only way in."""
        return self.postgres_run_dir / "postgres"

    @property
    def ferretdb_postgres_url(self) -> str:
        """FerretDB's connection to PostgreSQL, without the password (it goes by PGPASSWORD)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (
            f"postgres://ferretdb@{host}:{self.postgres_port}/{self.ferretdb_database}"
            "?sslmode=disable"
        )

    @property
    def mysql_socket(self) -> Path:
        return self.run_dir / "mariadb" / "mariadb.sock"
