"""HTTP clients of the soak: one pooled session per loopback source address, and one
call that turns every outcome (an answer, a refused connection, a timeout) into a code."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import orjson

from bench.soak.plan import Account

#: Seconds a request may take before it counts as "timeout" (an unclear answer).
REQUEST_TIMEOUT = 10.0
#: Idle keep-alive connections are dropped before the gateway's HEADER_TIMEOUT (10 s) does.
KEEPALIVE = 5.0


class Sessions:
    """aiohttp sessions by source address, made on first use and closed together."""

    def __init__(
        self, limit_per_address: int = 64, timeout: float | None = REQUEST_TIMEOUT
    ) -> None:
        """`limit_per_address` 0: no limit (streams hold a connection each); `timeout`
        None: no bound on a whole request (streams), only on connecting."""
        self._limit = limit_per_address
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=REQUEST_TIMEOUT)
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    def of(self, account: Account) -> aiohttp.ClientSession:
        session = self._sessions.get(account.address)
        if session is None:
            connector = aiohttp.TCPConnector(
                local_addr=(account.address, 0),
                limit=self._limit,
                keepalive_timeout=KEEPALIVE,
            )
            session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
            self._sessions[account.address] = session
        return session

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            with contextlib.suppress(Exception):  # closing is best effort at the end
                await session.close()


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    body: Any = None,
) -> tuple[str, Any, float]:
    """(code, decoded body or None, seconds): the HTTP status, or conn/timeout/unparsed."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.perf_counter()
    try:
        async with http.request(method, url, json=body, headers=headers) as resp:
            raw = await resp.read()
            code = str(resp.status)
            retry_after = resp.headers.get("Retry-After")
    except TimeoutError:
        return "timeout", None, time.perf_counter() - started
    except aiohttp.ClientError:
        return "conn", None, time.perf_counter() - started
    seconds = time.perf_counter() - started
    try:
        decoded = orjson.loads(raw) if raw else None
    except ValueError:
        return "unparsed", None, seconds
    if code == "429" and isinstance(decoded, dict) and retry_after:
        decoded["retryAfter"] = float(retry_after)
    return code, decoded, seconds


async def sign_in(http: aiohttp.ClientSession, api: str, account: Account) -> tuple[str, float]:
    """Sign in again; on success the account carries the new token. (code, seconds)."""
    body = {"username": account.username, "password": account.password}
    code, answer, seconds = await call(http, "POST", f"{api}/v1/auth/sign-in", body=body)
    if code == "200" and isinstance(answer, dict):
        account.token = str(answer["token"])
    return code, seconds


async def retrying(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    body: Any = None,
    attempts: int = 20,
) -> tuple[str, Any]:
    """`call`, waiting out 4290 (Retry-After) and connection errors: for the set-up only,
    where a rate limit is something to wait for, not a figure."""
    code, answer = "none", None
    for _ in range(attempts):
        code, answer, _ = await call(http, method, url, token, body)
        if code not in ("429", "conn", "timeout"):
            return code, answer
        pause = answer.get("retryAfter", 1.0) if isinstance(answer, dict) else 1.0
        await asyncio.sleep(min(pause, 30.0))
    return code, answer
