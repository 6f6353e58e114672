"""Scenario 6: MariaDB killed under load: sign-in fails with a clear 503 (5032) while
tokens already issued keep working on the chat routes; sign-in returns with MariaDB."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from infra.local import LocalSettings
from infra.processes.private import free_port, private_stack
from tests.support.faults import (
    FAST_FAIL,
    PASSWORD,
    Attempt,
    Load,
    Platform,
    check_written,
    outage,
    phase,
    summary,
)


async def sign_ins(
    http: aiohttp.ClientSession, url: str, username: str, stop: asyncio.Event
) -> list[Attempt]:
    """Sign in every 0.3 s until stopped (bounded); each attempt's answer code."""
    attempts: list[Attempt] = []
    body = {"username": username, "password": PASSWORD}
    for _ in range(1000):
        if stop.is_set():
            break
        started = time.monotonic()
        try:
            async with http.post(f"{url}/v1/auth/sign-in", json=body) as resp:
                answer = await resp.json(content_type=None)
                code = "200" if resp.status == 200 else str(answer.get("code"))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            code = type(exc).__name__
        attempts.append(Attempt("sign-in", started, time.monotonic(), code))
        await asyncio.sleep(0.3)
    return attempts


async def test_mariadb_killed(
    infra: LocalSettings,
    unique: Callable[[str], str],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    env = {"LOCAL_MYSQL_PORT": str(free_port())}
    with private_stack(tmp_path, infra.cache_dir, ["mariadb"], env) as mariadb:
        async with Platform.start(
            infra,
            unique,
            consul_url=infra.consul_url,
            mysql=mariadb.settings,
            gateway_overrides={"MYSQL_TIMEOUT": "2"},
        ) as platform:
            load = await Load.prepare(platform, http)
            username = f"f{platform.service[-10:].replace('-', '')}0"
            stop = asyncio.Event()
            async with load.running():
                signing = asyncio.create_task(sign_ins(http, platform.gateway.url, username, stop))
                await asyncio.sleep(phase(2))
                down = await outage(mariadb, "mariadb", phase(8))
                await asyncio.sleep(phase(4))
                stop.set()
                tried = await signing
            written = await check_written(platform, load)
            codes = sorted({a.code for a in tried})
            summary("6-mariadb-killed", load, written, f"sign_in_codes={codes}")

    during = [a for a in tried if down.killed + 1 < a.started < down.restarting]
    after = [a.code for a in tried if a.started > down.restored + 2]
    assert during and {a.code for a in during} == {"5032"}, during
    assert max(a.ended - a.started for a in during) < FAST_FAIL
    assert after and set(after) == {"200"}, after
    assert load.unclear() == [], load.unclear()
    assert written.missing == [] and written.duplicates == 0, written
    assert load.failed_reads() == [], load.failed_reads()
    assert set(load.codes("post")) <= {"202"}, load.codes("post")
