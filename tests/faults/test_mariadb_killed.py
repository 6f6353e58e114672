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
    PASSWORD,
    REQUEST_TIMEOUT,
    Attempt,
    Load,
    Platform,
    back,
    check_written,
    outage,
    phase,
    relapses,
    summary,
)
from tests.support.waiting import eventually, hold

SIGN_IN_EVERY = 0.3


async def sign_ins(
    http: aiohttp.ClientSession,
    url: str,
    username: str,
    stop: asyncio.Event,
    attempts: list[Attempt],
) -> None:
    """Sign in every SIGN_IN_EVERY s until stopped (bounded); appends each attempt."""
    body = {"username": username, "password": PASSWORD}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)  # a hang shows as TimeoutError
    for _ in range(1000):
        if stop.is_set():
            break
        started = time.monotonic()
        try:
            async with http.post(f"{url}/v1/auth/sign-in", json=body, timeout=timeout) as resp:
                answer = await resp.json(content_type=None)
                code = "200" if resp.status == 200 else str(answer.get("code"))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            code = type(exc).__name__
        attempts.append(Attempt("sign-in", started, time.monotonic(), code))
        await hold(SIGN_IN_EVERY)  # the client's rhythm


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
            tried: list[Attempt] = []
            async with load.running():
                signing = asyncio.create_task(
                    sign_ins(http, platform.gateway.url, username, stop, tried)
                )
                await hold(phase(2))
                down = await outage(mariadb, "mariadb", phase(8))
                await eventually(
                    lambda: back(tried, down.restored, {"200"}), what="sign-in working again"
                )
                await hold(phase(2))  # sign-ins once it works again
                stop.set()
                await signing
            written = await check_written(platform, load)
            codes = sorted({a.code for a in tried})
            during = [a for a in tried if down.gone < a.started < down.restarting]
            slowest = max((a.ended - a.started for a in during), default=0.0)
            extra = f"sign_in_codes={codes} slowest_sign_in_during_ms={slowest * 1000:.0f}"
            summary("6-mariadb-killed", load, written, extra)

    relapsed = relapses(tried, down.restored, {"200"})  # once through, always through
    assert during and {a.code for a in during} == {"5032"}, during
    assert back(tried, down.restored, {"200"}) and relapsed == [], relapsed
    assert load.unclear() == [], load.unclear()
    assert written.missing == [] and written.duplicates == 0, written
    assert load.failed_reads() == [], load.failed_reads()
    assert set(load.codes("post")) <= {"202"}, load.codes("post")
