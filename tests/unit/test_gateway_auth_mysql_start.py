"""Opening the user store: which MySQL errors are waited out, which end start-up at once,
and how `python -m gateway` and `python -m gateway.users` report them (no traceback)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiomysql
import pymysql
import pytest

import gateway.__main__ as gateway_main
from gateway import users as users_cli
from gateway.adapters.mysql_users import REFUSED_AT_CONNECT, mysql_pool

DENIED = pymysql.err.OperationalError(
    1142, "CREATE command denied to user 'dialogue'@'%' for table 'users'"
)


class _Cursor:
    """Answers what `migrate` asks; a statement containing `deny` raises `DENIED`."""

    def __init__(self, deny: str | None) -> None:
        self._deny = deny
        self._last = ""

    async def execute(self, statement: str, args: Any = None) -> None:
        self._last = statement
        if self._deny is not None and self._deny in statement:
            raise DENIED

    async def fetchone(self) -> tuple[Any, ...]:
        if "CONCAT" in self._last:
            return ("migration-lock",)
        return (1,) if "GET_LOCK" in self._last else (0,)

    async def fetchall(self) -> list[tuple[Any, ...]]:
        return []

    async def __aenter__(self) -> _Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Connection:
    def __init__(self, deny: str | None) -> None:
        self._deny = deny

    def cursor(self) -> _Cursor:
        return _Cursor(self._deny)


class _Pool:
    def __init__(self, deny: str | None) -> None:
        self._deny = deny
        self.closed = False

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Connection]:
        yield _Connection(self._deny)

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        return None


class _Server:
    """Stands in for `aiomysql.create_pool`: raises `failures` in turn, then opens a pool
    whose migrations hit `deny` (None: every statement succeeds)."""

    def __init__(self, *failures: Exception, deny: str | None = None) -> None:
        self.failures = list(failures)
        self.deny = deny
        self.connects = 0
        self.pools: list[_Pool] = []

    async def create_pool(self, **options: Any) -> _Pool:
        self.connects += 1
        if self.failures:
            raise self.failures.pop(0)
        pool = _Pool(self.deny)
        self.pools.append(pool)
        return pool


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> _Server:
    fake = _Server()
    monkeypatch.setattr(aiomysql, "create_pool", fake.create_pool)
    return fake


async def _open(connect_wait: float) -> None:
    async with mysql_pool(
        host="db.example",
        port=3306,
        user="dialogue",
        password="wrong",
        database="dialogue",
        size=1,
        connect_wait=connect_wait,
    ):
        pass


@pytest.mark.parametrize("code", sorted(REFUSED_AT_CONNECT))
async def test_a_refused_login_or_database_ends_start_up_at_once(
    server: _Server, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    """1045 used to be retried for the whole MYSQL_CONNECT_WAIT and then called
    'unreachable', which sent operators looking at the network."""
    server.failures = [pymysql.err.OperationalError(code, "Access denied or unknown database")]
    with caplog.at_level(logging.WARNING), pytest.raises(RuntimeError) as failed:
        await _open(connect_wait=3600)
    assert server.connects == 1
    assert "not reachable yet" not in caplog.text
    message = str(failed.value)
    assert "unreachable" not in message and REFUSED_AT_CONNECT[code] in message
    assert "db.example:3306" in message and str(code) in message


async def test_an_unreachable_server_is_still_waited_for(server: _Server) -> None:
    server.failures = [pymysql.err.OperationalError(2003, "Can't connect to MySQL server")]
    await _open(connect_wait=3600)
    assert server.connects == 2 and server.pools[0].closed


async def test_an_unreachable_server_past_the_wait_is_called_unreachable(
    server: _Server,
) -> None:
    server.failures = [pymysql.err.OperationalError(2003, "Can't connect to MySQL server")]
    with pytest.raises(RuntimeError, match=r"db\.example:3306 unreachable: .*2003"):
        await _open(connect_wait=0)


async def test_a_migration_mysql_refuses_is_a_start_up_failure(server: _Server) -> None:
    """An account that may not CREATE or ALTER (a DML-only production grant) got a
    pymysql traceback instead of a reason."""
    server.deny = "CREATE TABLE IF NOT EXISTS users"
    with pytest.raises(RuntimeError, match=r"^MySQL migration failed: \(1142, .*denied"):
        await _open(connect_wait=0)
    assert server.pools[0].closed


def _local(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {
        "DIALOGUE_ENV": "local",
        "MYSQL_CONNECT_WAIT": "3600",
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": "0",
    }.items():
        monkeypatch.setenv(key, value)


def test_the_gateway_says_it_cannot_start_when_migration_is_refused(
    server: _Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _local(monkeypatch)
    monkeypatch.setattr(gateway_main, "setup_logging", lambda level: None)
    server.deny = "CREATE TABLE IF NOT EXISTS users"
    with caplog.at_level(logging.ERROR, "gateway"), pytest.raises(SystemExit) as stopped:
        gateway_main.main()
    assert stopped.value.code == 1
    assert "cannot start: MySQL migration failed: (1142" in caplog.text


@pytest.mark.parametrize(
    ("failures", "deny", "said"),
    [
        (
            [pymysql.err.OperationalError(1045, "Access denied for user 'dialogue'")],
            None,
            "check MYSQL_USER and MYSQL_PASSWORD",
        ),
        ([], "CREATE TABLE IF NOT EXISTS users", "MySQL migration failed: (1142"),
    ],
)
def test_the_rename_command_reports_mysql_refusals_in_one_line(
    server: _Server,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    failures: list[Exception],
    deny: str | None,
    said: str,
) -> None:
    _local(monkeypatch)
    server.failures, server.deny = failures, deny
    assert users_cli.main(["rename", "7", "newname"]) == users_cli.REFUSED
    err = capsys.readouterr().err
    assert err.startswith("gateway.users: ") and said in err and "Traceback" not in err
    assert server.connects == 1
