"""The gateway's user store and migrations against the real MariaDB, in a fresh database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiomysql
import pytest

from contracts.errors import ErrorCode
from gateway.adapters.migrations import MIGRATIONS, migrate
from gateway.adapters.mysql_users import MySQLUserStore, mysql_pool
from gateway.adapters.passwords import Argon2Hasher
from gateway.errors import GatewayError
from infra.local import LocalSettings
from tests.support.gateway import mysql_execute


@pytest.fixture(scope="module")
async def database(infra: LocalSettings, run_id: str) -> AsyncIterator[str]:
    name = f"gw_users_{run_id}"
    await mysql_execute(infra, f"CREATE DATABASE `{name}`")
    yield name
    await mysql_execute(infra, f"DROP DATABASE `{name}`")


@pytest.fixture(scope="module")
async def pool(infra: LocalSettings, database: str) -> AsyncIterator[Any]:
    async with mysql_pool(
        host=infra.host,
        port=infra.mysql_port,
        user=infra.mysql_user,
        password=infra.mysql_password,
        database=database,
        size=4,
        connect_wait=5,
    ) as pool:
        yield pool


async def test_migrations_are_recorded_and_idempotent(pool: Any) -> None:
    async with pool.acquire() as conn:
        assert await migrate(conn) == []
        async with conn.cursor() as cur:
            await cur.execute("SELECT version FROM schema_migrations")
            assert [row[0] for row in await cur.fetchall()] == [v for v, _, _ in MIGRATIONS]
            await cur.execute("SHOW COLUMNS FROM users")
            columns = {row[0] for row in await cur.fetchall()}
    assert columns == {"id", "username", "password_hash", "gender", "created_at"}


async def test_concurrent_migrations_on_a_fresh_database(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    name = unique("gw_mig").replace("-", "_")
    await mysql_execute(infra, f"CREATE DATABASE `{name}`")
    try:
        conns = [
            await aiomysql.connect(
                host=infra.host,
                port=infra.mysql_port,
                user=infra.mysql_user,
                password=infra.mysql_password,
                db=name,
                autocommit=True,
            )
            for _ in range(3)
        ]
        results = await asyncio.gather(*(migrate(c) for c in conns))
        for conn in conns:
            conn.close()
        assert sorted(results) == [[], [], [1]]
    finally:
        await mysql_execute(infra, f"DROP DATABASE `{name}`")


async def test_users_add_find_and_unknown(pool: Any, unique: Callable[[str], str]) -> None:
    store = MySQLUserStore(pool, timeout=3)
    name = unique("u")[-20:]
    user = await store.add(name, "hash", "f")
    assert user.id >= 1 and user.gender == "f"
    assert await store.by_username(name) == user
    assert await store.by_id(user.id) == user
    assert await store.by_username(name + "x") is None
    assert await store.by_id(10**12) is None
    assert await store.unknown([user.id, 10**12]) == {10**12}
    assert await store.unknown([]) == set()
    await store.ping()


async def test_usernames_are_unique_ignoring_case(pool: Any, unique: Callable[[str], str]) -> None:
    store = MySQLUserStore(pool, timeout=3)
    name = unique("dup")[-20:]
    await store.add(name, "hash", "m")
    for taken in (name, name.upper()):
        with pytest.raises(GatewayError) as caught:
            await store.add(taken, "hash", "m")
        assert caught.value.code is ErrorCode.USERNAME_TAKEN
    await store.ping()  # the pool is still usable after the duplicate


async def test_unreachable_mysql_fails_start_with_a_clear_error(infra: LocalSettings) -> None:
    with pytest.raises(RuntimeError, match="unreachable"):
        async with mysql_pool(
            host=infra.host,
            port=1,
            user="x",
            password="x",
            database="x",
            size=1,
            connect_wait=0,
        ):
            pass


async def test_argon2id_hash_and_verify() -> None:
    hasher = Argon2Hasher(time_cost=1, memory_kib=1024, parallelism=1)
    hashed = await hasher.hash("secret1")
    assert hashed.startswith("$argon2id$")
    assert await hasher.verify(hashed, "secret1")
    assert not await hasher.verify(hashed, "secret2")
    assert not await hasher.verify("garbage", "secret1")
