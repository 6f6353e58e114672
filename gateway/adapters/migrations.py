"""The MySQL schema of the gateway, applied in order and recorded in schema_migrations."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.adapters.username_migration import canonical_usernames

log = logging.getLogger(__name__)

LOCK_NAME = "dialogue_gateway_migrations"
LOCK_WAIT_S = 30

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


async def migrate(conn: Any) -> list[int]:
    """Apply the migrations this database has not seen; returns the versions applied.

    Safe to run from several gateways at once: a named lock serialises them, and
    every step is idempotent in case a previous run stopped half-way.
    """
    applied: list[int] = []
    async with conn.cursor() as cur:
        await cur.execute("SELECT GET_LOCK(%s, %s)", (LOCK_NAME, LOCK_WAIT_S))
        (locked,) = await cur.fetchone()
        if locked != 1:
            raise RuntimeError(f"could not take the migration lock {LOCK_NAME!r}")
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
            await cur.execute("SELECT RELEASE_LOCK(%s)", (LOCK_NAME,))
    return applied
