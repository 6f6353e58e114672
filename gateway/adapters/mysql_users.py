"""Users in MySQL/MariaDB through an aiomysql pool."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import aiomysql
import pymysql

from contracts.errors import ErrorCode
from gateway.adapters.migrations import migrate
from gateway.domain.usernames import Username
from gateway.domain.users import Gender, User
from gateway.errors import GatewayError
from platform_common.retry import Backoff, retry

log = logging.getLogger(__name__)

DUPLICATE_ENTRY = 1062
#: Connection refusals that waiting cannot cure, with what to check: start-up fails at
#: once instead of retrying them for MYSQL_CONNECT_WAIT and calling MySQL unreachable.
REFUSED_AT_CONNECT = {
    1044: "MYSQL_USER has no access to MYSQL_DATABASE",
    1045: "check MYSQL_USER and MYSQL_PASSWORD",
    1049: "MYSQL_DATABASE does not exist",
    1129: "this host is blocked after too many connection errors (FLUSH HOSTS)",
    1130: "MYSQL_USER has no account for connections from this host",
    1698: "check MYSQL_USER and MYSQL_PASSWORD",  # a unix_socket account, another OS user
}
_COLUMNS = "id, username, password_hash, gender, created_at"


def _unavailable() -> GatewayError:
    return GatewayError(ErrorCode.USER_STORE_UNAVAILABLE, "user store unavailable")


def _user(row: tuple[Any, ...]) -> User:
    uid, username, password_hash, gender, created_at = row
    return User(int(uid), username, password_hash, gender, int(created_at))


class MySQLUserStore:
    """Every call is bounded by `timeout`; outages become GatewayError 5032."""

    def __init__(self, pool: Any, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout

    @asynccontextmanager
    async def _cursor(self) -> AsyncIterator[Any]:
        try:
            async with asyncio.timeout(self._timeout), self._pool.acquire() as conn:
                try:
                    async with conn.cursor() as cur:
                        yield cur
                except pymysql.err.IntegrityError:
                    raise
                except BaseException:
                    conn.close()  # a half-finished query leaves no reusable connection
                    raise
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError) as exc:
            log.warning("user store error: %s", exc)
            raise _unavailable() from exc
        except TimeoutError as exc:
            log.warning("user store timed out after %.1f s", self._timeout)
            raise _unavailable() from exc

    async def add(self, username: Username, password_hash: str, gender: Gender) -> User:
        created = int(time.time())
        try:
            async with self._cursor() as cur:
                await cur.execute(
                    "INSERT INTO users"
                    " (username, username_canonical, password_hash, gender, created_at)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (username.display, username.canonical.encode(), password_hash, gender, created),
                )
                uid = cur.lastrowid
        except pymysql.err.IntegrityError as exc:
            if exc.args and exc.args[0] == DUPLICATE_ENTRY:
                raise GatewayError(ErrorCode.USERNAME_TAKEN, "username is taken") from None
            raise
        return User(int(uid), username.display, password_hash, gender, created)

    async def by_username(self, username: Username) -> User | None:
        async with self._cursor() as cur:
            await cur.execute(
                f"SELECT {_COLUMNS} FROM users WHERE username_canonical = %s",
                (username.canonical.encode(),),
            )
            row = await cur.fetchone()
        return _user(row) if row else None

    async def by_id(self, user_id: int) -> User | None:
        async with self._cursor() as cur:
            await cur.execute(f"SELECT {_COLUMNS} FROM users WHERE id = %s", (user_id,))
            row = await cur.fetchone()
        return _user(row) if row else None

    async def unknown(self, user_ids: Iterable[int]) -> set[int]:
        wanted = set(user_ids)
        if not wanted:
            return set()
        marks = ", ".join(["%s"] * len(wanted))
        async with self._cursor() as cur:
            await cur.execute(f"SELECT id FROM users WHERE id IN ({marks})", tuple(wanted))
            found = {int(row[0]) for row in await cur.fetchall()}
        return wanted - found

    async def by_ids(self, user_ids: Iterable[int]) -> list[User]:
        wanted = sorted(set(user_ids))
        if not wanted:
            return []
        marks = ", ".join(["%s"] * len(wanted))
        async with self._cursor() as cur:
            await cur.execute(f"SELECT {_COLUMNS} FROM users WHERE id IN ({marks})", tuple(wanted))
            return [_user(row) for row in await cur.fetchall()]

    async def rename(self, user_id: int, name: Username) -> None:
        """Give the user `name` and its canonical form; 4040 for no such user, 4090 when
        another account has that canonical form."""
        try:
            async with self._cursor() as cur:
                await cur.execute(
                    "UPDATE users SET username = %s, username_canonical = %s WHERE id = %s",
                    (name.display, name.canonical.encode(), user_id),
                )
        except pymysql.err.IntegrityError as exc:
            if exc.args and exc.args[0] == DUPLICATE_ENTRY:
                raise GatewayError(ErrorCode.USERNAME_TAKEN, "username is taken") from None
            raise
        if await self.by_id(user_id) is None:
            raise GatewayError(ErrorCode.NOT_FOUND, f"no user has id {user_id}")

    async def replace_password_hash(self, user_id: int, old: str, new: str) -> bool:
        async with self._cursor() as cur:
            await cur.execute(
                "UPDATE users SET password_hash = %s WHERE id = %s AND password_hash = %s",
                (new, user_id, old),
            )
            return bool(cur.rowcount)

    async def by_usernames(self, usernames: Iterable[Username]) -> list[User]:
        wanted = sorted({u.canonical.encode() for u in usernames})
        if not wanted:
            return []
        marks = ", ".join(["%s"] * len(wanted))
        async with self._cursor() as cur:
            await cur.execute(
                f"SELECT {_COLUMNS} FROM users WHERE username_canonical IN ({marks})",
                tuple(wanted),
            )
            return [_user(row) for row in await cur.fetchall()]

    async def ping(self) -> None:
        async with self._cursor() as cur:
            await cur.execute("SELECT 1")
            await cur.fetchone()


def _as_sent(password: str) -> str:
    """The password as aiomysql must be given it for the server to see its UTF-8 bytes.

    aiomysql sends a password as Latin-1 (`password.encode("latin1")`), while MariaDB and
    MySQL hash what a UTF-8 client sends: the `mysql` client, or `CREATE USER ...
    IDENTIFIED BY` over a utf8mb4 connection. Found in review: a password past Latin-1
    ("pass€word") failed the start with a UnicodeEncodeError traceback, and one
    within it ("päss") was sent as other bytes than it was set with, and refused. Its
    UTF-8 bytes, read as Latin-1, are encoded back to exactly those bytes."""
    return password.encode().decode("latin-1")


@asynccontextmanager
async def mysql_pool(
    *,
    host: str,
    port: int,
    user: str,
    password: str,
    database: str,
    size: int,
    connect_wait: float,
) -> AsyncIterator[Any]:
    """An aiomysql pool with the migrations applied; retries start-up for `connect_wait` s."""

    async def connect() -> Any:
        return await aiomysql.create_pool(
            host=host,
            port=port,
            user=user,
            password=_as_sent(password),
            db=database,
            minsize=1,
            maxsize=size,
            autocommit=True,
            connect_timeout=5,
            pool_recycle=3600,
            charset="utf8mb4",
        )

    def unreachable(exc: Exception) -> bool:
        return isinstance(exc, pymysql.err.OperationalError | OSError) and not _refusal(exc)

    def report(exc: Exception, delay: float) -> None:
        log.warning("MySQL not reachable yet (%s); retrying in %.1f s", exc, delay)

    try:
        pool = await retry(
            connect,
            retry_on=unreachable,
            backoff=Backoff(0.2, 5.0),
            deadline=time.monotonic() + connect_wait,
            on_failure=report,
        )
    except (pymysql.err.OperationalError, OSError) as exc:
        if hint := _refusal(exc):
            raise RuntimeError(f"MySQL at {host}:{port} refused us ({hint}): {exc}") from exc
        raise RuntimeError(f"MySQL at {host}:{port} unreachable: {exc}") from exc
    try:
        try:
            async with pool.acquire() as conn:
                applied = await migrate(conn)
        except (pymysql.err.MySQLError, OSError) as exc:  # e.g. 1142: may not CREATE/ALTER
            raise RuntimeError(f"MySQL migration failed: {exc}") from exc
        log.info("MySQL ready", extra={"database": database, "migrations_applied": applied})
        yield pool
    finally:
        pool.close()
        await pool.wait_closed()


def _refusal(exc: BaseException) -> str | None:
    """What to check when MySQL refused the connection for good (REFUSED_AT_CONNECT)."""
    if isinstance(exc, pymysql.err.OperationalError) and exc.args:
        return REFUSED_AT_CONNECT.get(exc.args[0])
    return None
