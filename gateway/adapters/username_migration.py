"""Migration 2: the canonical form of every username, in its own unique binary column.

Existing rows are backfilled in id order, so when two old names share a canonical form
(the old collation told them apart, the canonical form does not) the older account
keeps it. The younger one keeps its row, chats and messages but gets no canonical form
(NULL, which the unique index allows any number of times), so it cannot sign in until
an operator renames it; the migration logs every such id.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.domain.usernames import canonical, refusal

log = logging.getLogger(__name__)

COLUMN = "username_canonical"
MAX_BYTES = 1020
BATCH = 1000
_LOGGED_IDS = 50


async def _exists(cur: Any, sql: str, *args: str) -> bool:
    await cur.execute(sql, args)
    return bool((await cur.fetchone())[0])


async def _schema(cur: Any) -> None:
    # Checked in information_schema rather than with IF [NOT] EXISTS: MySQL 8 has none
    # for columns and indexes, and a re-run after a half-done migration must pass.
    if not await _exists(
        cur,
        "SELECT COUNT(*) FROM information_schema.COLUMNS"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'users' AND COLUMN_NAME = %s",
        COLUMN,
    ):
        # VARBINARY: compared byte for byte, without the trailing-space padding that
        # even utf8mb4_bin applies; 1020 bytes hold 255 characters of UTF-8.
        await cur.execute(
            f"ALTER TABLE users ADD COLUMN {COLUMN} VARBINARY({MAX_BYTES}) NULL AFTER username,"
            f" ADD UNIQUE KEY users_{COLUMN} ({COLUMN})"
        )
    # Uniqueness is the canonical form's alone now, not the collation's.
    if await _exists(
        cur,
        "SELECT COUNT(*) FROM information_schema.STATISTICS"
        " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'users' AND INDEX_NAME = %s",
        "users_username",
    ):
        await cur.execute("ALTER TABLE users DROP INDEX users_username")


async def _taken(cur: Any) -> set[bytes]:
    """Canonical forms already stored (a re-run after a half-done backfill)."""
    await cur.execute(f"SELECT {COLUMN} FROM users WHERE {COLUMN} IS NOT NULL")
    return {bytes(row[0]) for row in await cur.fetchall()}


async def _store(cur: Any, keys: list[tuple[int, bytes]]) -> None:
    """Set the canonical forms of a batch with one UPDATE through a temporary table."""
    if not keys:
        return
    await cur.execute("DELETE FROM canonical_backfill")
    await cur.executemany("INSERT INTO canonical_backfill (id, k) VALUES (%s, %s)", keys)
    await cur.execute(
        f"UPDATE users JOIN canonical_backfill b ON users.id = b.id SET users.{COLUMN} = b.k"
    )


async def canonical_usernames(cur: Any) -> None:
    """Add the column and its unique index, then backfill it (see the module docstring)."""
    await _schema(cur)
    await cur.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS canonical_backfill"
        f" (id BIGINT UNSIGNED PRIMARY KEY, k VARBINARY({MAX_BYTES}) NOT NULL)"
    )
    taken = await _taken(cur)
    conflicts: list[int] = []
    refused: list[int] = []
    last = 0
    try:
        while True:
            await cur.execute(
                f"SELECT id, username FROM users WHERE id > %s AND {COLUMN} IS NULL"
                " ORDER BY id LIMIT %s",
                (last, BATCH),
            )
            rows = await cur.fetchall()
            if not rows:
                break
            batch: list[tuple[int, bytes]] = []
            for uid, name in rows:
                last = int(uid)
                if refusal(name) is not None:
                    refused.append(last)
                key = canonical(name).encode()[:MAX_BYTES]
                if key in taken:
                    conflicts.append(last)  # an older row holds it (rows come in id order)
                    continue
                taken.add(key)
                batch.append((last, key))
            await _store(cur, batch)
    finally:
        await cur.execute("DROP TEMPORARY TABLE IF EXISTS canonical_backfill")
    if conflicts:
        log.warning(
            "%d user(s) share a canonical username with an older account: they keep their "
            "data but cannot sign in until renamed (ids: %s)",
            len(conflicts),
            ", ".join(map(str, conflicts[:_LOGGED_IDS])),
        )
    if refused:
        log.warning(
            "%d user(s) have names that sign-up now refuses (mixed scripts, invisible "
            "characters): sign-in refuses them until renamed (ids: %s)",
            len(refused),
            ", ".join(map(str, refused[:_LOGGED_IDS])),
        )
