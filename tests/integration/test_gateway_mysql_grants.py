"""A production grant of data rights only (SELECT, INSERT, UPDATE, DELETE) on the real
MariaDB: the gateway cannot migrate its schema there, and says so in one line instead of
a pymysql traceback. The unit tests of the same refusal stand a fake pool in for the
server; this one asks MariaDB itself, so the error code and text are the server's."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.adapters.mysql_users import mysql_pool
from infra.dev.settings import service_environment
from infra.local import LocalSettings
from infra.local.mariadb import MariaDB

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "data-rights-only"


@dataclass(frozen=True)
class Account:
    user: str
    database: str


@pytest.fixture
def data_only(infra: LocalSettings, unique: Callable[[str], str]) -> Iterator[Account]:
    """A fresh database and an account that may read and write its rows, nothing more."""
    account = Account(
        user=unique("dml")[-24:].replace("-", "_"),
        database=unique("gw_grants").replace("-", "_"),
    )
    root = MariaDB(infra)._root()  # infra's own superuser session, over the socket
    try:
        with root.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{account.database}`")
            for host in ("127.0.0.1", "localhost"):
                cur.execute(f"CREATE USER %s@'{host}' IDENTIFIED BY %s", (account.user, PASSWORD))
                cur.execute(
                    f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{account.database}`.* "
                    f"TO %s@'{host}'",
                    (account.user,),
                )
        yield account
    finally:
        with root.cursor() as cur:
            for host in ("127.0.0.1", "localhost"):
                cur.execute(f"DROP USER IF EXISTS %s@'{host}'", (account.user,))
            cur.execute(f"DROP DATABASE IF EXISTS `{account.database}`")
        root.close()


async def test_opening_the_user_store_without_create_rights_is_a_one_line_failure(
    infra: LocalSettings, data_only: Account
) -> None:
    with pytest.raises(RuntimeError) as failed:
        async with mysql_pool(
            host=infra.host,
            port=infra.mysql_port,
            user=data_only.user,
            password=PASSWORD,
            database=data_only.database,
            size=1,
            connect_wait=0,
        ):
            pass
    said = str(failed.value)
    assert said.startswith("MySQL migration failed: (1142, "), said
    assert "denied" in said and data_only.user in said


def test_the_gateway_exits_1_and_says_why(infra: LocalSettings, data_only: Account) -> None:
    env = service_environment(
        os.environ,
        {
            "DIALOGUE_ENV": "local",
            "MYSQL_HOST": infra.host,
            "MYSQL_PORT": str(infra.mysql_port),
            "MYSQL_USER": data_only.user,
            "MYSQL_PASSWORD": PASSWORD,
            "MYSQL_DATABASE": data_only.database,
            "MYSQL_CONNECT_WAIT": "0",
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": "0",
        },
    )
    ran = subprocess.run(
        [sys.executable, "-m", "gateway"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 1, ran.stderr
    assert "cannot start: MySQL migration failed: (1142" in ran.stderr
    assert "Traceback" not in ran.stderr
