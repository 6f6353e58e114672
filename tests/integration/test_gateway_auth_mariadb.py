"""Auth against the real MariaDB: a refused login ends start-up at once with its reason,
and an account named before the space-run rule still signs in."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.adapters.mysql_users import REFUSED_AT_CONNECT, MySQLUserStore, mysql_pool
from gateway.domain.throttle import FailureBudget, FailureLimit, SignInThrottle
from gateway.domain.tokens import TokenCodec
from gateway.domain.usernames import Username, canonical, sign_in_name, sign_up_refusal
from gateway.domain.users import Credentials
from gateway.services.auth import AuthService
from infra.local import LocalSettings
from infra.processes.gateway import mysql_execute
from tests.support.gateway_fakes import FakeHasher

#: Far longer than any test may take: a refusal that were waited out would show.
LONG_WAIT = 600


@pytest.fixture(scope="module")
async def database(infra: LocalSettings, run_id: str) -> AsyncIterator[str]:
    name = f"gw_authfix_{run_id}"
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
        size=2,
        connect_wait=5,
    ) as pool:
        yield pool


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
    env = {
        "PATH": os.environ["PATH"],
        "DIALOGUE_ENV": "local",
        "MYSQL_HOST": infra.host,
        "MYSQL_PORT": str(infra.mysql_port),
        "MYSQL_USER": infra.mysql_user,
        "MYSQL_PASSWORD": infra.mysql_password + "-wrong",
        "MYSQL_DATABASE": database,
        "MYSQL_CONNECT_WAIT": str(LONG_WAIT),
    }
    command = [sys.executable, "-m", "gateway.users", "rename", "1", "newname"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
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
