"""aiomysql against the real MariaDB, including a bytes parameter (PyMySQL<1.2)."""

from __future__ import annotations

from collections.abc import Callable

import aiomysql

from infra.local import LocalSettings


async def test_create_insert_bytes_select(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    table = unique("smoke").replace("-", "_")
    pool = await aiomysql.create_pool(
        host=infra.host,
        port=infra.mysql_port,
        user=infra.mysql_user,
        password=infra.mysql_password,
        db=infra.mysql_database,
        autocommit=True,
    )
    try:
        async with pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(
                f"CREATE TABLE `{table}` (id INT AUTO_INCREMENT PRIMARY KEY,"
                " name VARCHAR(30) NOT NULL, digest VARBINARY(64) NOT NULL)"
            )
            await cur.execute(
                f"INSERT INTO `{table}` (name, digest) VALUES (%s, %s)",
                ("alice", b"\x00\xffbinary\x01"),
            )
            await cur.execute(f"SELECT name, digest FROM `{table}` WHERE name = %s", ("alice",))
            assert await cur.fetchall() == (("alice", b"\x00\xffbinary\x01"),)
            await cur.execute(f"DROP TABLE `{table}`")
    finally:
        pool.close()
        await pool.wait_closed()
