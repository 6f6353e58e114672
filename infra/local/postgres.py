"""PostgreSQL from Debian's packages: FerretDB's storage, as a cluster of its own.

The cluster lives in `<postgres run dir>/postgres/data` (initdb'd there, never the
system cluster) and listens on 127.0.0.1:`LOCAL_POSTGRES_PORT` (5433, so a system
cluster on 5432 does not clash) and on a unix socket in `<postgres run dir>/postgres`.
PostgreSQL refuses to run as root: when the stack runs as root, initdb and the server
run as the `postgres` OS user the package creates (setpriv execs without forking, so the
pid file keeps the server's pid). That user must reach the folder: as root, when it
cannot reach the run folder (a clone under /root, mode 700) and LOCAL_POSTGRES_RUN_DIR is
unset, the postgres run dir is /var/tmp/dialogue-platform-<hash of the run folder>.

Least privilege, as for MariaDB: the superuser (`postgres`) answers only over the unix
socket, to the OS user running the stack (peer authentication); FerretDB logs in over
TCP as role `ferretdb` (password `LOCAL_POSTGRES_PASSWORD`), which is no superuser and
owns the databases FerretDB stores in. In each of those, `ferretdb_pg.sql` installs the
event triggers FerretDB needs (GIN twins of its indexes, the version guard).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra.local.apt import apt_install
from infra.local.service import Progress, Service, ServiceError
from infra.local.settings import PG_NAME, POSTGRES_OS_USER, os_user, postgres_fallback_dir

SUPERUSER = "postgres"
ROLE = "ferretdb"
SQL_FILE = Path(__file__).with_name("ferretdb_pg.sql")
PG_ROOT = Path("/usr/lib/postgresql")

#: Server settings for a small machine; the command line overrides postgresql.conf.
SERVER_SETTINGS = {
    "shared_buffers": "128MB",
    "max_connections": "200",
    # Acknowledged writes survive a crash of the machine, not only of the process.
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    # FerretDB names the field in a query parameter (`_jsonb->$1 @> $2`): only a custom
    # plan matches the GIN twins' expressions; a generic plan scans (docs/decisions.md).
    "plan_cache_mode": "auto",
    # Compiling a query costs more than running it here.
    "jit": "off",
    "cluster_name": "dialogue-local",
    "logging_collector": "off",  # stderr goes to <run dir>/postgres.log
    "log_line_prefix": "%m [%p] %q%a ",
    "unix_socket_permissions": "0700",
    "password_encryption": "scram-sha-256",
}

#: Bytes of the original index name kept in a GIN twin's name (+ "_" + 8 hex + "_gin" = 63).
TWIN_PREFIX_BYTES = 50


def gin_twin_name(index_name: str, field: str) -> str:
    """The name ferretdb_pg.sql gives the GIN twin of btree `index_name` for key `field`.

    The original's name cut to 50 bytes (never inside a character), then the first 8 hex
    digits of md5(field) and `_gin`: at most 63 bytes, PostgreSQL's limit, and distinct
    for each key of a compound index and for an index re-created on another field.
    """
    prefix = index_name.encode()[:TWIN_PREFIX_BYTES].decode(errors="ignore")
    digest = hashlib.md5(field.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{prefix}_{digest}_gin"


def bin_dir(major: str | None = None) -> Path | None:
    """An installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<major>/bin):
    that major's when given and installed, else the newest."""
    found = {}
    for folder in PG_ROOT.glob("*/bin"):
        if folder.parent.name.isdigit() and all(
            (folder / tool).exists() for tool in ("postgres", "initdb", "psql")
        ):
            found[folder.parent.name] = folder
    if major in found:
        return found[major]
    return found[max(found, key=int)] if found else None


def sql_literal(value: str) -> str:
    """A SQL string literal (standard_conforming_strings is on)."""
    if "\0" in value:
        raise ValueError("a SQL string cannot hold NUL")
    return "'" + value.replace("'", "''") + "'"


def conninfo(**params: str | int) -> str:
    """A libpq connection string; values quoted as libpq wants."""
    quoted = (str(v).replace("\\", "\\\\").replace("'", "\\'") for v in params.values())
    return " ".join(f"{k}='{v}'" for k, v in zip(params, quoted, strict=True))


def hba_conf() -> str:
    """pg_hba.conf: the superuser by unix socket (peer, mapped), FerretDB's role by TCP."""
    return (
        "# Written by infra/local/postgres.py before every start; edits here are lost.\n"
        "# TYPE  DATABASE  USER      ADDRESS       METHOD\n"
        f"local   all       {SUPERUSER:<9} {'':<13} peer map=superuser\n"
        f"host    all       {ROLE:<9} 127.0.0.0/8   scram-sha-256\n"
        f"host    all       {ROLE:<9} ::1/128       scram-sha-256\n"
    )


def ident_conf(os_users: list[str]) -> str:
    """pg_ident.conf: which OS users may be the superuser over the socket."""
    lines = "".join(f"superuser  {user:<12} {SUPERUSER}\n" for user in dict.fromkeys(os_users))
    return "# Written by infra/local/postgres.py before every start; edits here are lost.\n" + lines


@dataclass(frozen=True)
class _OsUser:
    name: str
    uid: int
    gid: int


def _server_user() -> _OsUser:
    """Who runs initdb and the server: `postgres` when we are root, else ourselves."""
    name = POSTGRES_OS_USER if os.geteuid() == 0 else os_user()
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise ServiceError(
            f"no OS user {name!r}: PostgreSQL refuses to run as root, and Debian's "
            "postgresql package normally creates that user (reinstall it)"
        ) from exc
    return _OsUser(name, entry.pw_uid, entry.pw_gid)


def _clean_env() -> dict[str, str]:
    """Our environment without PG* variables, which would redirect libpq and the server."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


class Postgres(Service):
    name = "postgres"
    marker = "postgres"
    # "Fast" shutdown: SIGTERM ("smart") would wait for FerretDB's pooled connections.
    stop_signal = signal.SIGINT

    @property
    def run_dir(self) -> Path:
        return self.settings.postgres_run_dir

    def make_run_dir(self) -> None:
        fallback = postgres_fallback_dir(self.settings.run_dir)
        if self.run_dir != fallback:
            super().make_run_dir()
            return
        # In /var/tmp, which anyone may write to: it must be ours alone, and no link.
        fallback.mkdir(mode=0o755, parents=True, exist_ok=True)
        info = fallback.lstat()
        if (
            not stat.S_ISDIR(info.st_mode)
            or info.st_uid != os.geteuid()
            or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        ):
            raise ServiceError(
                f"{fallback} is not a folder that only {os_user()} can write to; remove it "
                "(or set LOCAL_POSTGRES_RUN_DIR to another folder) and start again"
            )
        # mkdir's mode passes through the umask (027 left it 750: out of the server
        # user's reach again); checked above to be a folder of ours, not a link.
        if info.st_mode & 0o755 != 0o755:
            fallback.chmod(0o755)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.settings.postgres_socket_dir

    def _bin(self, tool: str) -> str:
        """A PostgreSQL program; the major that made the cluster when it is installed."""
        try:
            major: str | None = (self.pgdata / "PG_VERSION").read_text().strip()
        except OSError:
            major = None
        folder = bin_dir(major)
        if folder is None:
            raise ServiceError("PostgreSQL is not installed (apt-get install postgresql)")
        return str(folder / tool)

    def _as_server(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        user = _server_user().name
        return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]

    def provision(self, progress: Progress) -> None:
        if bin_dir() is not None:
            return
        apt_install(self.name, "postgresql", progress)
        if bin_dir() is None:
            raise ServiceError(f"postgresql was installed but {PG_ROOT}/<major>/bin is missing")

    def prepare(self, progress: Progress) -> None:
        user = _server_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chown(self.data_dir, user.uid, user.gid)  # holds the socket: the server writes it
        self.data_dir.chmod(0o750)
        self._check_reachable(user)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(user, progress)
        self._check_version()
        for conf, text in (
            ("pg_hba.conf", hba_conf()),
            ("pg_ident.conf", ident_conf([os_user(), user.name])),
        ):
            path = self.pgdata / conf
            path.write_text(text)
            os.chown(path, user.uid, user.gid)
            path.chmod(0o600)

    def _check_reachable(self, user: _OsUser) -> None:
        if os.geteuid() != 0:
            return
        probe = subprocess.run(
            self._as_server(["test", "-w", str(self.data_dir), "-a", "-x", str(self.data_dir)]),
            capture_output=True,
            check=False,
        )
        if probe.returncode != 0:
            raise ServiceError(
                f"the {user.name!r} OS user cannot reach {self.data_dir}: PostgreSQL runs as "
                "that user (it refuses root), so every folder above it must be searchable by "
                "it (chmod o+x), or set LOCAL_POSTGRES_RUN_DIR to a folder it can reach"
            )

    def _initdb(self, user: _OsUser, progress: Progress) -> None:
        if self.pgdata.exists():
            raise ServiceError(
                f"{self.pgdata} exists but is no PostgreSQL data folder (no PG_VERSION); "
                "move it away and start again"
            )
        progress.step(self.name, f"initialising a cluster in {self.pgdata}")
        staging = self.data_dir / "data.initdb"  # renamed once complete: never half a cluster
        if staging.exists():
            shutil.rmtree(staging)
        proc = subprocess.run(
            self._as_server(
                [
                    self._bin("initdb"),
                    f"--pgdata={staging}",
                    f"--username={SUPERUSER}",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    "--no-instructions",
                ]
            ),
            cwd=self.data_dir,
            env=self.env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ServiceError(f"initdb failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        staging.rename(self.pgdata)

    def _check_version(self) -> None:
        data = (self.pgdata / "PG_VERSION").read_text().strip()
        installed = Path(self._bin("postgres")).parent.parent.name
        if data != installed:
            raise ServiceError(
                f"{self.pgdata} was made by PostgreSQL {data}, the installed one is "
                f"{installed}: remove that folder (local data) or install postgresql-{data}"
            )

    def argv(self) -> list[str]:
        s = self.settings
        settings = {
            **SERVER_SETTINGS,
            "listen_addresses": s.host,
            "port": str(s.postgres_port),
            "unix_socket_directories": str(self.socket_dir),
        }
        options = [arg for k, v in settings.items() for arg in ("-c", f"{k}={v}")]
        return self._as_server([self._bin("postgres"), "-D", str(self.pgdata), *options])

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}

    def query(self, database: str, sql: str, timeout: float | None = 30.0) -> str:
        """Run SQL as the superuser over the unix socket; psql's unaligned output."""
        return self._superuser(database, sql, timeout).stdout

    def _superuser(
        self, database: str, sql: str, timeout: float | None
    ) -> subprocess.CompletedProcess[str]:
        return self._psql(
            conninfo(
                host=str(self.socket_dir),
                port=self.settings.postgres_port,
                user=SUPERUSER,
                dbname=database,
                connect_timeout=3,
                application_name="infra.local",
            ),
            sql,
            _clean_env(),
            timeout,
        )

    def _psql(
        self, conn: str, sql: str, env: dict[str, str], timeout: float | None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", conn],
            input=sql,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise ServiceError(f"psql failed:\n{proc.stderr[-3000:]}")
        return proc

    def probe(self) -> None:
        self.query("postgres", "SELECT 1", timeout=10)

    def after_ready(self, progress: Progress) -> None:
        s = self.settings
        self.query("postgres", self._role_and_database_sql())
        for notice in self.install_triggers(s.ferretdb_database):
            progress.step(self.name, f"{s.ferretdb_database}: {notice}")
        # FerretDB's way in works, and is no superuser's.
        check = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        superuser = self.query_over_tcp(s.ferretdb_database, check).strip()
        if superuser != "f":
            raise ServiceError(f"role {ROLE} must not be a superuser (got {superuser!r})")

    def query_over_tcp(
        self, database: str, sql: str, user: str = ROLE, password: str | None = None
    ) -> str:
        """Run SQL over TCP as `user` (FerretDB's role, with its password by default)."""
        s = self.settings
        login = conninfo(
            host=s.host,
            port=s.postgres_port,
            user=user,
            dbname=database,
            sslmode="disable",
            connect_timeout=3,
        )
        secret = s.postgres_password if password is None else password
        return self._psql(login, sql, dict(_clean_env(), PGPASSWORD=secret), 30).stdout

    def _role_and_database_sql(self) -> str:
        s = self.settings
        database = s.ferretdb_database
        return f"""
            -- One installer at a time: concurrent ALTER ROLE or CREATE DATABASE fail.
            SELECT pg_advisory_lock(hashtext('infra.local postgres roles'));
            SELECT 'CREATE ROLE {ROLE} LOGIN'
             WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') \\gexec
            ALTER ROLE {ROLE} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
                  NOBYPASSRLS PASSWORD {sql_literal(s.postgres_password)};
            -- FerretDB's pushed-down equality has two plans: its GIN twin or reading the
            -- whole table. The planner picks the scan for a table of a page or two, which
            -- makes an explain check at start depend on the data; with sequential scans
            -- discouraged (not forbidden: an unindexed query still scans) the twin is
            -- used at every size. A query with no usable index plans as before.
            ALTER ROLE {ROLE} SET enable_seqscan = off;
            -- A refused stale write is an expected answer, and FerretDB logs its SQL
            -- itself: one line each in postgres.log, not five.
            ALTER ROLE {ROLE} SET log_error_verbosity = terse;
            ALTER ROLE {ROLE} SET log_min_error_statement = panic;
            SELECT 'CREATE DATABASE {database} OWNER {ROLE}'
             WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{database}') \\gexec
            ALTER DATABASE {database} OWNER TO {ROLE};
            REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC;
            REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC;
        """

    def install_triggers(self, database: str) -> list[str]:
        """ferretdb_pg.sql in `database`, in one transaction (idempotent, with backfill).

        Returns its notices (what the backfill added, if anything).
        """
        sql = SQL_FILE.read_text()
        proc = self._superuser(_checked(database), f"BEGIN;\n{sql}\nCOMMIT;\n", None)
        return re.findall(r"NOTICE:\s+(backfill: .*)", proc.stderr)

    def drop_database(self, database: str) -> None:
        """Drop a database FerretDB stored in, closing what is still connected to it."""
        self.query("postgres", f"DROP DATABASE IF EXISTS {_checked(database)} WITH (FORCE)")

    def endpoint(self) -> str:
        s = self.settings
        return f"postgresql://{ROLE}@{s.host}:{s.postgres_port}/{s.ferretdb_database}"


def _checked(database: str) -> str:
    """A database name safe to write into SQL unquoted."""
    if not PG_NAME.fullmatch(database):
        raise ServiceError(f"not a database name infra/local makes: {database!r}")
    return database
