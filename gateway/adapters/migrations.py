"""The MySQL schema of the gateway, applied in order and recorded in schema_migrations."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.adapters.username_migration import canonical_usernames

log = logging.getLogger(__name__)

#: The lock's name is this and the MD5 of the database's name: GET_LOCK names are
#: server-wide (64 characters at most), and gateways of two databases on one server
#: (staging beside production, the tests' gw_* ones) must not wait for each other.
LOCK_PREFIX = "dialogue_gateway_migrations:"
#: Seconds of one wait for the lock; a gateway waits as long as another holds it (a lock
#: dies with its holder's connection), saying so after each.
LOCK_WAIT_S = 30.0

Step = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True)
class Migration:
    """One numbered change; `apply` gets a cursor and must be safe to re-run."""

    version: int
    name: str
    apply: Step


def sql(statement: str) -> Step:
    """A step that runs one (idempotent) SQL statement."""

    async def run(cur: Any) -> None:
        await cur.execute(statement)

    return run


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "create users",
        sql(
            """
            CREATE TABLE IF NOT EXISTS users (
                id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
                username VARCHAR(30) NOT NULL,
                password_hash VARCHAR(255) NOT NULL,
                gender ENUM('m', 'f') NOT NULL,
                created_at BIGINT NOT NULL COMMENT 'unix seconds',
                UNIQUE KEY users_username (username)
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
            """
        ),
    ),
    Migration(2, "canonical usernames", canonical_usernames),
]


async def migrate(conn: Any, lock_wait: float = LOCK_WAIT_S) -> list[int]:
    """Apply the migrations this database has not seen; returns the versions applied.

    Safe to run from several gateways at once: a named lock serialises them (a long
    backfill holds it for minutes: the others wait), and every step is idempotent in
    case a previous run stopped half-way.
    """
    applied: list[int] = []
    async with conn.cursor() as cur:
        await cur.execute("SELECT CONCAT(%s, MD5(DATABASE()))", (LOCK_PREFIX,))
        (lock,) = await cur.fetchone()
        while True:
            await cur.execute("SELECT GET_LOCK(%s, %s)", (lock, lock_wait))
            (locked,) = await cur.fetchone()
            if locked == 1:
                break
            if locked is None:
                raise RuntimeError(f"could not take the migration lock {lock!r}")
            await cur.execute("SELECT IS_USED_LOCK(%s)", (lock,))
            (holder,) = await cur.fetchone()
            log.warning(
                "waiting for the migration lock, held by MySQL connection %s (another "
                "gateway migrating this database)",
                holder,
            )
        try:
            # "already exists" notes are expected on re-runs; aiomysql would turn them
            # into Python warnings.
            await cur.execute("SET SESSION sql_notes = 0")
            await cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INT NOT NULL PRIMARY KEY,"
                " name VARCHAR(200) NOT NULL,"
                " applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP"
                ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            )
            await cur.execute("SELECT version FROM schema_migrations")
            done = {row[0] for row in await cur.fetchall()}
            for migration in MIGRATIONS:
                if migration.version in done:
                    continue
                await migration.apply(cur)
                await cur.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                log.info(
                    "applied migration",
                    extra={"version": migration.version, "migration": migration.name},
                )
                applied.append(migration.version)
        finally:
            await cur.execute("SET SESSION sql_notes = 1")
            await cur.execute("SELECT RELEASE_LOCK(%s)", (lock,))
    return applied
