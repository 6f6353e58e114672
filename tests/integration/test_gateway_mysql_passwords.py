"""A MySQL password beyond ASCII, set the way operators set one (`CREATE USER ...
IDENTIFIED BY` over a utf8mb4 connection, as the `mysql` client does), opens the
gateway's user store on the real MariaDB. Found in review: aiomysql sent the password as
Latin-1, so one past Latin-1 failed the start with a UnicodeEncodeError traceback and one
within it went as other bytes than it was set with, and was refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.adapters.mysql_users import mysql_pool
from infra.local import LocalSettings
from infra.local.mariadb import MariaDB

HOSTS = ("127.0.0.1", "localhost")


@pytest.mark.parametrize(
    "password",
    [
        "päss-wörd-within-latin-1",
        "pass€word-past-latin-1-密码",
        "an emoji 🔑 and a combining e\u0301",
    ],
)
async def test_a_password_beyond_ascii_opens_the_user_store(
    infra: LocalSettings, unique: Callable[[str], str], password: str
) -> None:
    user = unique("pw")[-24:].replace("-", "_")
    database = unique("gw_pw").replace("-", "_")
    root = MariaDB(infra)._root()  # infra's own superuser session, over the socket
    try:
        with root.cursor() as cur:
            cur.execute("SELECT @@character_set_client")
            assert cur.fetchone()[0] == "utf8mb4"  # what the password is hashed from
            cur.execute(f"CREATE DATABASE `{database}`")
            for host in HOSTS:
                cur.execute(f"CREATE USER %s@'{host}' IDENTIFIED BY %s", (user, password))
                cur.execute(f"GRANT ALL ON `{database}`.* TO %s@'{host}'", (user,))
        async with mysql_pool(
            host=infra.host,
            port=infra.mysql_port,
            user=user,
            password=password,
            database=database,
            size=1,
            connect_wait=0,
        ) as pool:
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute("SELECT CURRENT_USER()")
                (current,) = await cur.fetchone()
        assert current.startswith(f"{user}@")
        with pytest.raises(RuntimeError, match="refused"):
            async with mysql_pool(
                host=infra.host,
                port=infra.mysql_port,
                user=user,
                password=password + "x",
                database=database,
                size=1,
                connect_wait=0,
            ):
                pass
    finally:
        with root.cursor() as cur:
            for host in HOSTS:
                cur.execute(f"DROP USER IF EXISTS %s@'{host}'", (user,))
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        root.close()
