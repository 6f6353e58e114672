"""The MySQL schema of the gateway, applied in order and recorded in schema_migrations."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

LOCK_NAME = "dialogue_gateway_migrations"
LOCK_WAIT_S = 30

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "create users",
        """
        CREATE TABLE IF NOT EXISTS users (
            id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
            username VARCHAR(30) NOT NULL,
            password_hash VARCHAR(255) NOT NULL,
            gender ENUM('m', 'f') NOT NULL,
            created_at BIGINT NOT NULL COMMENT 'unix seconds',
            UNIQUE KEY users_username (username)
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
        """,
    ),
]


async def migrate(conn: Any) -> list[int]:
    """Apply the migrations this database has not seen; returns the versions applied.

    Safe to run from several gateways at once: a named lock serialises them, and
    every statement is idempotent in case a previous run stopped half-way.
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
            for version, name, sql in MIGRATIONS:
                if version in done:
                    continue
                await cur.execute(sql)
                await cur.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (version, name),
                )
                log.info("applied migration", extra={"version": version, "migration": name})
                applied.append(version)
        finally:
            await cur.execute("SET SESSION sql_notes = 1")
            await cur.execute("SELECT RELEASE_LOCK(%s)", (LOCK_NAME,))
    return applied
