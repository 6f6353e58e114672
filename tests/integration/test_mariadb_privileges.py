"""Least privilege on the shared MariaDB: the project account owns its databases and
nothing else, and no superuser answers over TCP."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pymysql
import pytest
import yaml

from infra.local import LocalSettings
from infra.local.mariadb import MariaDB
from infra.processes.gateway import mysql_connect, mysql_execute

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


async def test_the_project_account_has_no_server_wide_rights(infra: LocalSettings) -> None:
    conn = await mysql_connect(infra)
    try:
        async with conn.cursor() as cur:
            await cur.execute("SHOW GRANTS")
            grants = [row[0] for row in await cur.fetchall()]
            for statement in (
                "CREATE DATABASE other_db_of_someone",
                "SELECT User FROM mysql.user",
                "CREATE USER intruder@'%'",
            ):
                with pytest.raises(pymysql.err.OperationalError) as refused:
                    await cur.execute(statement)
                assert refused.value.args[0] in (1044, 1142, 1227), statement
    finally:
        conn.close()
    assert not any("ON *.*" in g and "USAGE" not in g for g in grants), grants
    assert any(f"ON `{infra.mysql_database}`.*" in g for g in grants), grants


async def test_the_project_account_creates_and_drops_test_databases(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    for prefix in ("gw", "faults", infra.mysql_database):
        name = unique(f"{prefix}_priv").replace("-", "_")
        await mysql_execute(infra, f"CREATE DATABASE `{name}`")
        await mysql_execute(infra, f"DROP DATABASE `{name}`")


@pytest.mark.parametrize("password", ["", "root", "dialogue-local"])
def test_no_superuser_answers_over_tcp(infra: LocalSettings, password: str) -> None:
    with pytest.raises(pymysql.err.OperationalError) as refused:
        pymysql.connect(host=infra.host, port=infra.mysql_port, user="root", password=password)
    assert refused.value.args[0] == 1045


def test_infra_keeps_its_own_superuser_session_over_the_socket(infra: LocalSettings) -> None:
    conn = MariaDB(infra)._root()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT plugin FROM mysql.user WHERE User = 'root' AND Host = 'localhost'")
            assert cur.fetchone() == ("unix_socket",)
            cur.execute("SELECT COUNT(*) FROM mysql.user WHERE User = 'root'")
            assert cur.fetchone() == (1,)
    finally:
        conn.close()


async def test_the_compose_mysql_check_fails_on_credentials_the_server_refuses(
    infra: LocalSettings,
) -> None:
    """docker-compose.yml's check of `mysql`, run against the local MariaDB as compose
    would run it: it passes with the gateway's credentials and fails with others.
    `mysqladmin ping` exits 0 on "Access denied": a volume kept from another .env showed
    healthy while the gateway was refused (found in review)."""
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    kind, command = compose["services"]["mysql"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL" and "-h 127.0.0.1" in command
    command = command.replace("$$", "$").replace("127.0.0.1", f"{infra.host} -P {infra.mysql_port}")

    def check(password: str) -> int:
        env = {
            "PATH": os.environ["PATH"],
            "MYSQL_USER": infra.mysql_user,
            "MYSQL_PASSWORD": password,
            "MYSQL_DATABASE": infra.mysql_database,
        }
        return subprocess.run(["sh", "-c", command], env=env, capture_output=True).returncode

    assert check(infra.mysql_password) == 0
    assert check(infra.mysql_password + "-not") != 0
