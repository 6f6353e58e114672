"""MariaDB from Debian's packages, with its own datadir, a project database and user.

Least privilege: the project user has every right on the project database and on the
databases tests create (`TEST_DATABASES`), none on the server (`*.*`). The superuser is
reachable only over the unix socket, by the OS user running the stack (unix_socket
authentication, no password); no root account is left that answers over TCP.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pymysql

from infra.local.apt import apt_install
from infra.local.service import Progress, Service, ServiceError
from infra.local.settings import os_user

SBIN = [Path("/usr/sbin"), Path("/usr/bin")]
#: Present when systemd runs the machine (sd_booted()).
SYSTEMD = Path("/run/systemd/system")
#: Databases the tests create, one per run: gw_* (tests/integration, tests/e2e, bench),
#: faults_* (tests/faults). Grant patterns: `\_` is a literal underscore.
TEST_DATABASES = ("gw\\_%", "faults\\_%")
#: Server errors of a refused login (access denied; unix_socket: not this OS user).
_REFUSED_LOGINS = (1045, 1698)


def _find(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in SBIN:
        if (folder / name).exists():
            return str(folder / name)
    return None


class MariaDB(Service):
    name = "mariadb"
    marker = "mariadbd"
    ready_timeout = 90.0

    def provision(self, progress: Progress) -> None:
        if _find("mariadbd") and _find("mariadb-install-db"):
            return
        apt_install(self.name, "mariadb-server", progress)
        if SYSTEMD.is_dir():
            # On a machine run by systemd the package starts Debian's own server, on
            # 127.0.0.1:3306, where ours listens: stopped and kept from starting at boot.
            # Only when installed here: a server the machine had before is its owner's.
            progress.step(self.name, "stopping Debian's mariadb service the package started")
            subprocess.run(
                ["systemctl", "disable", "--now", "mariadb.service"],
                capture_output=True,
                check=False,
            )

    def _user_args(self) -> list[str]:
        # mariadbd refuses to run as root unless told to; we own the datadir either way.
        return ["--user=root"] if os.geteuid() == 0 else []

    def prepare(self, progress: Progress) -> None:
        self._port_free()
        data = self.data_dir / "data"
        if (data / "mysql").exists():
            return
        progress.step(self.name, "initialising datadir")
        data.mkdir(parents=True, exist_ok=True)
        install_db = _find("mariadb-install-db")
        assert install_db is not None
        proc = subprocess.run(
            [
                install_db,
                "--no-defaults",
                f"--datadir={data}",
                "--auth-root-authentication-method=socket",
                f"--auth-root-socket-user={os_user()}",
                "--skip-test-db",
                *self._user_args(),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise ServiceError(
                f"mariadb-install-db failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )

    def _port_free(self) -> None:
        """A server not started by infra on our TCP port (a MySQL or MariaDB the machine
        runs: Debian's starts on 3306) would make ours exit with "Address already in use"
        behind a bare "exited during start-up"; the stack's own check asks our socket."""
        s = self.settings
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            taken = probe.connect_ex((s.host, s.mysql_port)) == 0
        if taken:
            raise ServiceError(
                f"{self.name}: something not started by infra listens on "
                f"{s.host}:{s.mysql_port} (a MySQL or MariaDB of this machine? Debian's: "
                "`sudo systemctl disable --now mariadb`); stop it or set LOCAL_MYSQL_PORT"
            )

    def argv(self) -> list[str]:
        s = self.settings
        mariadbd = _find("mariadbd")
        assert mariadbd is not None
        return [
            mariadbd,
            "--no-defaults",
            *self._user_args(),
            f"--datadir={self.data_dir / 'data'}",
            f"--socket={s.mysql_socket}",
            f"--pid-file={self.data_dir / 'mariadbd.pid'}",
            f"--bind-address={s.host}",
            f"--port={s.mysql_port}",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--max-connections=500",
            "--innodb-buffer-pool-size=128M",
            "--innodb-flush-log-at-trx-commit=2",
        ]

    def _session(self, user: str) -> pymysql.Connection[Any]:
        # We open the socket ourselves: pymysql leaks it when connecting fails
        # (it is not yet its own to close), and a probe fails often during start-up.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(2)
        try:
            sock.connect(str(self.settings.mysql_socket))
            conn = pymysql.connect(user=user, autocommit=True, defer_connect=True)
            conn.connect(sock)
        except BaseException:
            sock.close()
            raise
        return conn

    def _root(self) -> pymysql.Connection[Any]:
        """A superuser session over the unix socket, as the OS user (unix_socket auth).

        A datadir made before root went socket-only has a password-less root instead,
        which `after_ready` then converts.
        """
        try:
            return self._session(os_user())
        except pymysql.err.OperationalError as exc:
            if exc.args[0] not in _REFUSED_LOGINS or os_user() == "root":
                raise
            return self._session("root")

    def probe(self) -> None:
        self._root().close()

    def after_ready(self, progress: Progress) -> None:
        s = self.settings
        conn = self._root()
        try:
            with conn.cursor() as cur:
                _socket_only_superuser(cur)
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{s.mysql_database}`")
                project = s.mysql_database.replace("_", "\\_")
                databases = (project, f"{project}\\_%", *TEST_DATABASES)
                for host in ("127.0.0.1", "localhost"):
                    cur.execute(
                        f"CREATE USER IF NOT EXISTS %s@'{host}' IDENTIFIED BY %s",
                        (s.mysql_user, s.mysql_password),
                    )
                    cur.execute(
                        f"ALTER USER %s@'{host}' IDENTIFIED BY %s", (s.mysql_user, s.mysql_password)
                    )
                    # Granted before the server-wide rights go, so no session sees a gap.
                    for database in databases:
                        pattern = database.replace("%", "%%")  # pymysql's placeholders
                        cur.execute(
                            f"GRANT ALL PRIVILEGES ON `{pattern}`.* TO %s@'{host}'",
                            (s.mysql_user,),
                        )
                    cur.execute(f"REVOKE ALL PRIVILEGES ON *.* FROM %s@'{host}'", (s.mysql_user,))
        finally:
            conn.close()
        check = pymysql.connect(
            host=s.host,
            port=s.mysql_port,
            user=s.mysql_user,
            password=s.mysql_password,
            database=s.mysql_database,
            connect_timeout=2,
        )
        check.close()

    def endpoint(self) -> str:
        s = self.settings
        return f"mysql://{s.mysql_user}@{s.host}:{s.mysql_port}/{s.mysql_database}"


def _socket_only_superuser(cur: Any) -> None:
    """The OS user's superuser authenticates by unix socket only; no other root remains."""
    user = os_user()
    cur.execute("CREATE USER IF NOT EXISTS %s@'localhost' IDENTIFIED VIA unix_socket", (user,))
    cur.execute("ALTER USER %s@'localhost' IDENTIFIED VIA unix_socket", (user,))
    cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'localhost' WITH GRANT OPTION", (user,))
    cur.execute("ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket")
    cur.execute(
        "SELECT User, Host FROM mysql.user WHERE (User = 'root' AND Host <> 'localhost')"
        " OR User = ''"
    )
    for name, host in cur.fetchall():
        cur.execute("DROP USER %s@%s", (name, host))
