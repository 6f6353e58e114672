"""The gateway's user store and migrations against the real MariaDB, in a fresh database."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from contracts.errors import ErrorCode
from gateway.adapters.migrations import LOCK_PREFIX, MIGRATIONS, migrate
from gateway.adapters.mysql_users import REFUSED_AT_CONNECT, MySQLUserStore, mysql_pool
from gateway.adapters.passwords import Argon2Hasher
from gateway.domain.throttle import FailureBudget, FailureLimit, SignInThrottle
from gateway.domain.tokens import TokenCodec
from gateway.domain.usernames import (
    Username,
    canonical,
    sign_in_name,
    sign_up_refusal,
    username,
)
from gateway.domain.users import Credentials
from gateway.errors import GatewayError
from gateway.services.auth import AuthService
from infra.local import LocalSettings
from infra.processes.gateway import mysql_connect, mysql_execute, scratch_database, users_command
from tests.support.gateway_fakes import FakeHasher
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
async def database(infra: LocalSettings, run_id: str) -> AsyncIterator[str]:
    async with scratch_database(infra, f"gw_users_{run_id}") as name:
        yield name


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
            assert [row[0] for row in await cur.fetchall()] == [m.version for m in MIGRATIONS]
            await cur.execute("SHOW COLUMNS FROM users")
            columns = {row[0] for row in await cur.fetchall()}
            await cur.execute(
                "SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA ="
                " DATABASE() AND TABLE_NAME = 'users' AND COLUMN_NAME = 'username_canonical'"
            )
            (data_type,) = await cur.fetchone()
            await cur.execute("SHOW INDEX FROM users WHERE Non_unique = 0")
            unique = {row[4] for row in await cur.fetchall()}
    assert columns == {
        "id",
        "username",
        "username_canonical",
        "password_hash",
        "gender",
        "created_at",
    }
    assert data_type == "varbinary"  # compared byte for byte, no collation, no padding
    assert unique == {"id", "username_canonical"}


async def test_concurrent_migrations_on_a_fresh_database(
    infra: LocalSettings, unique: Callable[[str], str]
) -> None:
    name = unique("gw_mig").replace("-", "_")
    await mysql_execute(infra, f"CREATE DATABASE `{name}`")
    try:
        conns = [await mysql_connect(infra, name) for _ in range(3)]
        results = await asyncio.gather(*(migrate(c) for c in conns))
        for conn in conns:
            conn.close()
        assert sorted(results) == [[], [], [1, 2]]
    finally:
        await mysql_execute(infra, f"DROP DATABASE `{name}`")


async def test_users_add_find_and_unknown(pool: Any, unique: Callable[[str], str]) -> None:
    store = MySQLUserStore(pool, timeout=3)
    name = username(unique("u")[-20:])
    user = await store.add(name, "hash", "f")
    assert user.id >= 1 and user.gender == "f"
    assert await store.by_username(name) == user
    assert await store.by_id(user.id) == user
    assert await store.by_username(username(name.display + "x")) is None
    assert await store.by_id(10**12) is None
    assert await store.unknown([user.id, 10**12]) == {10**12}
    assert await store.unknown([]) == set()
    await store.ping()


async def test_usernames_are_unique_by_canonical_form(
    pool: Any, unique: Callable[[str], str]
) -> None:
    store = MySQLUserStore(pool, timeout=3)
    name = unique("dup")[-20:]
    await store.add(username(name), "hash", "m")
    wide = "".join(chr(ord(c) - 0x21 + 0xFF01) if "!" <= c <= "~" else c for c in name)
    for taken in (name, name.upper(), wide):
        with pytest.raises(GatewayError) as caught:
            await store.add(username(taken), "hash", "m")
        assert caught.value.code is ErrorCode.USERNAME_TAKEN
        assert await store.by_username(sign_in_name(taken)) is not None
    await store.ping()  # the pool is still usable after the duplicate


async def test_look_up_is_binary_on_the_canonical_form(
    pool: Any, unique: Callable[[str], str]
) -> None:
    store = MySQLUserStore(pool, timeout=3)
    base = unique("bin")[-20:].replace("-", "")
    user = await store.add(username(f"{base}a"), "hash", "f")
    # The old collation took these for the same name; the canonical form does not.
    accented = await store.add(username(f"{base}\u00e1"), "hash", "f")
    assert accented.id != user.id
    assert (await store.by_username(username(f"{base}A"))) == user
    for other in (f"{base}a ", f"{base}\u00e0"):
        assert await store.by_username(Username(other, other)) is None


async def test_backfill_gives_a_shared_canonical_form_to_the_oldest_account(
    infra: LocalSettings, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    name = unique("gw_backfill").replace("-", "_")
    await mysql_execute(infra, f"CREATE DATABASE `{name}`")
    conn = await mysql_connect(infra, name)
    # Rows as migration 1 kept them: distinct for utf8mb4_unicode_ci, but the mathematical
    # bold "a" and the full-width "ALICE" have the canonical form "alice".
    old = ["alice", "bobby", "\U0001d41alice", "\uff21\uff2c\uff29\uff23\uff25x", "ali\u0441e"]
    try:
        async with conn.cursor() as cur:
            await MIGRATIONS[0].apply(cur)
            await cur.execute(
                "CREATE TABLE schema_migrations (version INT PRIMARY KEY,"
                " name VARCHAR(200), applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"
            )
            await cur.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'x')")
            for n, display in enumerate(old):
                await cur.execute(
                    "INSERT INTO users (username, password_hash, gender, created_at)"
                    " VALUES (%s, 'h', 'm', %s)",
                    (display, n),
                )
        with caplog.at_level(logging.WARNING):
            assert await migrate(conn) == [2]
        async with conn.cursor() as cur:
            await cur.execute("SELECT id, username, username_canonical FROM users ORDER BY id")
            rows = await cur.fetchall()
    finally:
        conn.close()
        await mysql_execute(infra, f"DROP DATABASE `{name}`")
    canonical = [None if row[2] is None else row[2].decode() for row in rows]
    assert canonical == ["alice", "bobby", None, "alicex", "ali\u0441e"]
    warnings = " ".join(r.getMessage() for r in caplog.records)
    assert "share a canonical username with an older account: they keep their data" in warnings
    assert f"(ids: {rows[2][0]})" in warnings
    assert "sign-up now refuses" in warnings and f"(ids: {rows[4][0]})" in warnings


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


async def test_users_by_ids_and_by_usernames_in_one_query(
    pool: Any, unique: Callable[[str], str]
) -> None:
    store = MySQLUserStore(pool, timeout=3)
    base = unique("many")[-16:].replace("-", "")
    made = [await store.add(username(f"{base}{i}"), "hash", "m") for i in range(3)]
    assert sorted(await store.by_ids([u.id for u in made] + [10**12]), key=lambda u: u.id) == made
    names = [sign_in_name(f"{base.upper()}{i}") for i in range(3)] + [username(f"{base}x")]
    assert sorted(await store.by_usernames(names), key=lambda u: u.id) == made
    assert await store.by_ids([]) == [] and await store.by_usernames([]) == []


async def test_a_migration_waits_for_the_lock_as_long_as_it_is_held_in_its_database_only(
    infra: LocalSettings, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    """A long backfill held the lock past the 30 s wait and the next gateway exited;
    the lock was also one for the whole server, so another database's gateway did too."""
    names = [unique("gw_lock").replace("-", "_") for _ in range(2)]
    for name in names:
        await mysql_execute(infra, f"CREATE DATABASE `{name}`")
    conns = []
    try:
        for name in (names[0], names[0], names[1]):
            conns.append(await mysql_connect(infra, name))
        holder, waiter, elsewhere = conns
        async with holder.cursor() as cur:  # another gateway, mid-migration
            await cur.execute("SELECT GET_LOCK(CONCAT(%s, MD5(DATABASE())), 0)", (LOCK_PREFIX,))
            assert (await cur.fetchone())[0] == 1
        assert await migrate(elsewhere, lock_wait=0.2) == [1, 2]  # not held there
        caplog.set_level(logging.WARNING, logger="gateway.adapters.migrations")
        waiting = asyncio.create_task(migrate(waiter, lock_wait=0.2))
        await eventually(
            lambda: sum("waiting for the migration lock" in r.message for r in caplog.records),
            lambda n: n >= 2,
            what="two rounds of waiting",
        )
        assert not waiting.done()
        async with holder.cursor() as cur:
            await cur.execute("SELECT RELEASE_LOCK(CONCAT(%s, MD5(DATABASE())))", (LOCK_PREFIX,))
        assert await waiting == [1, 2]
    finally:
        for conn in conns:
            conn.close()
        for name in names:
            await mysql_execute(infra, f"DROP DATABASE `{name}`")


async def test_a_sign_in_rehashes_a_password_made_with_weaker_settings(
    pool: Any, unique: Callable[[str], str]
) -> None:
    """Raising ARGON2_* used to strengthen new accounts only, and made a known name
    cheaper to check than an unknown one (whose decoy follows the new settings)."""
    store = MySQLUserStore(pool, timeout=3)
    weak = Argon2Hasher(time_cost=1, memory_kib=1024, parallelism=1)
    strong = Argon2Hasher(time_cost=2, memory_kib=2048, parallelism=1)
    name = username(unique("rehash")[-16:].replace("-", ""))
    made = await store.add(name, await weak.hash("right-password"), "f")
    assert strong.needs_rehash(made.password_hash) and not weak.needs_rehash(made.password_hash)
    codec = TokenCodec("k" * 40, "test", 60)
    throttle = SignInThrottle(
        FailureLimit(5, 60, 60), FailureLimit(0, 60, 60), FailureBudget(0, 60)
    )
    auth = AuthService(store, strong, codec, throttle, time.time)
    credentials = Credentials(sign_in_name(name.display), "right-password")
    assert (await auth.sign_in(credentials, "127.0.0.1")).user_id == made.id
    stored = await store.by_id(made.id)
    assert stored is not None and stored.password_hash != made.password_hash
    assert not strong.needs_rehash(stored.password_hash)
    assert (await auth.sign_in(credentials, "127.0.0.1")).user_id == made.id  # the new hash works
    assert await store.replace_password_hash(made.id, made.password_hash, "stale") is False
    # Lower settings (or another gateway's, mid-rollout) never weaken a stored hash.
    assert not weak.needs_rehash((await store.by_id(made.id)).password_hash)  # type: ignore[union-attr]
    mixed = Argon2Hasher(time_cost=3, memory_kib=1024, parallelism=1)  # longer, less memory
    assert not mixed.needs_rehash(stored.password_hash)


async def test_an_account_left_without_a_canonical_name_is_renamed_by_the_command(
    pool: Any, infra: LocalSettings, database: str, unique: Callable[[str], str]
) -> None:
    """What migration 2 leaves for an operator: a row without a canonical form, which
    cannot sign in. Hand-written SQL could not compute the form sign-in looks up."""
    store = MySQLUserStore(pool, timeout=3)
    base = unique("ren")[-12:].replace("-", "")
    left = await store.add(username(f"{base}old"), "hash", "m")
    taken = await store.add(username(f"{base}taken"), "hash", "f")
    async with pool.acquire() as conn, conn.cursor() as cur:
        await cur.execute("UPDATE users SET username_canonical = NULL WHERE id = %s", (left.id,))

    done = await asyncio.to_thread(
        users_command, infra, database, "rename", str(left.id), f"{base.upper()}New"
    )
    assert done.returncode == 0, done.stderr
    found = await store.by_username(sign_in_name(f"{base}new"))  # any spelling signs in
    assert found is not None and found.id == left.id and found.username == f"{base.upper()}New"

    cases = [
        ((str(left.id), f"{base}TAKEN"), 1, "username is taken"),
        (("999999999", f"{base}free"), 1, "no user has id 999999999"),
        ((str(left.id), "a"), 2, "not renamed"),
        (("x", f"{base}free"), 2, "is not a user id"),
    ]
    for args, code, said in cases:
        refused = await asyncio.to_thread(users_command, infra, database, "rename", *args)
        assert (refused.returncode, said in refused.stderr) == (code, True), refused.stderr
    assert (await store.by_id(taken.id)) == taken


#: Far longer than any test may take: a refusal that were waited out would show.
LONG_WAIT = 600


async def _open(infra: LocalSettings, *, password: str, database: str) -> None:
    async with mysql_pool(
        host=infra.host,
        port=infra.mysql_port,
        user=infra.mysql_user,
        password=password,
        database=database,
        size=1,
        connect_wait=LONG_WAIT,
    ):
        pass


async def test_a_wrong_password_fails_at_once_with_its_reason(
    infra: LocalSettings, database: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError) as failed:
        await _open(infra, password=infra.mysql_password + "-wrong", database=database)
    assert "not reachable yet" not in caplog.text  # never retried
    assert REFUSED_AT_CONNECT[1045] in str(failed.value) and "(1045" in str(failed.value)


async def test_a_missing_database_fails_at_once_with_its_reason(
    infra: LocalSettings, run_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError) as failed:
        await _open(infra, password=infra.mysql_password, database=f"gw_missing_{run_id}")
    assert "not reachable yet" not in caplog.text
    assert "refused us" in str(failed.value)  # 1049, or 1044 without rights to the name


def test_the_rename_command_reports_a_wrong_password_in_one_line(
    infra: LocalSettings, database: str
) -> None:
    wrong = {"MYSQL_PASSWORD": infra.mysql_password + "-wrong"}
    done = users_command(
        infra, database, "rename", "1", "newname", MYSQL_CONNECT_WAIT=str(LONG_WAIT), **wrong
    )
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    assert f"gateway.users: MySQL at {infra.host}:{infra.mysql_port} refused us" in done.stderr


async def test_an_account_named_with_two_spaces_before_the_rule_still_signs_in(
    pool: Any, unique: Callable[[str], str]
) -> None:
    """Sign-up now refuses "john  smith"; an account made with it before keeps its
    canonical form, and sign-in still finds it."""
    store = MySQLUserStore(pool, timeout=3)
    hasher = FakeHasher()
    old_name = f"old  {unique('u').replace('-', '')}"
    assert sign_up_refusal(old_name) is not None
    made = await store.add(
        Username(old_name, canonical(old_name)), await hasher.hash("right-password"), "f"
    )
    throttle = SignInThrottle(
        FailureLimit(5, 60, 60), FailureLimit(0, 60, 60), FailureBudget(0, 60)
    )
    auth = AuthService(store, hasher, TokenCodec("k" * 40, "test", 60), throttle, time.time)
    token = await auth.sign_in(Credentials(sign_in_name(old_name), "right-password"), "127.0.0.1")
    assert token.user_id == made.id
