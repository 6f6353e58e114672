"""Token renewal in the web client, in a real browser: a session lasts while the tab is in
use (POST /v1/auth/refresh before the token expires), and ends as before when the server
refuses to renew it or when the token expired while the tab slept.

The gateway of this module issues tokens for 60 s (the least JWT_TTL allows). The page's
clock is Playwright's: it moves on to the renewal at once, while the server's clock is the
machine's. The page measures a token's life by the server's clock (its Date header), so a
page clock moved on does not make the server's tokens look older than they are.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, Request, WebSocket

from infra.local import LocalSettings
from tests.browser.pages import (
    DESK,
    StreamTap,
    chat_with_someone,
    refuse,
    sign_in,
    sign_up,
    token_of,
)
from tests.support.api_user import User
from tests.support.faults import Platform
from tests.support.waiting import eventually

TTL = 60  # s, the JWT_TTL of this module's gateway
RENEWAL = 50_000  # ms of the page's clock: past 80 % of a token's 60 s
REFRESH = "**/v1/auth/refresh"


@pytest.fixture(scope="module")
async def platform(infra: LocalSettings, unique: Callable[[str], str]) -> AsyncIterator[Platform]:
    """Workers and a gateway whose tokens live 60 s."""
    overrides = {"JWT_TTL": str(TTL)}
    async with Platform.start(
        infra, unique, consul_url=infra.consul_url, gateway_overrides=overrides
    ) as started:
        yield started


async def new_page(browser: Browser) -> Page:
    """A page whose clock the test moves (installed before it loads)."""
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    await page.clock.install()
    return page


def finished(page: Page, method: str, ending: str) -> list[str]:
    """The URLs of the page's requests with that method and path ending, once answered."""
    done: list[str] = []

    def on_finished(request: Request) -> None:
        if request.method == method and request.url.split("?")[0].endswith(ending):
            done.append(request.url)

    page.on("requestfinished", on_finished)
    return done


def hellos(page: Page) -> list[tuple[WebSocket, str]]:
    """Each stream socket the page opens, with the token of its hello, as they go."""
    said: list[tuple[WebSocket, str]] = []

    def opened(socket: WebSocket) -> None:
        def sent(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if frame.get("type") == "hello":
                said.append((socket, frame["token"]))

        socket.on("framesent", sent)

    page.on("websocket", opened)
    return said


async def next_second(token: dict[str, Any]) -> None:
    """Until the server's clock has left the second the token was issued in: a token it
    renews within that second is the same string, and expires no later."""
    issued = token["expiresAt"] - TTL
    await eventually(time.time, lambda now: now >= issued + 1, what="the next second")


async def renewed(page: Page, first: dict[str, Any]) -> dict[str, Any]:
    """The page's token, once it is a renewal of `first`."""
    token: dict[str, Any] = await eventually(
        lambda: token_of(page), lambda t: t["expiresAt"] > first["expiresAt"], what="renewed"
    )
    return token


async def session_ended(page: Page) -> None:
    error = page.locator("#auth-error")
    await eventually(error.text_content, lambda t: "session has ended" in (t or ""), what="why")


async def test_a_session_outlives_its_first_token(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """Renewed at 80 % of its life, the session goes on past the first token's expiry by
    the server's own clock: the server closes the stream the first token opened (4002),
    the page says hello again with the new token, and a message sent once the server
    refuses the first token is stored. Before, the 4002 ended the session. A send made
    with the first token and held on its way until the server refuses that token is
    answered 401, sent again with the new token and stored: before, that 401 ended the
    session. Waits for the server's clock to pass the first token's expiry: over a
    minute."""
    url = platform.gateway.url
    page = await new_page(browser)
    said = hellos(page)
    held: list[Any] = []

    async def hold_the_first_send(route: Any) -> None:
        if held:
            await route.continue_()
        else:
            held.append(route)

    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, url, http, unique)
        first = await token_of(page)
        await page.route(f"**/v1/chats/{cid}/messages", hold_the_first_send)
        await page.click(f".chat[data-cid='{cid}']")
        await page.wait_for_selector("#compose")
        await page.fill("#compose", "sent with the first token")
        await page.press("#compose", "Enter")
        await eventually(lambda: len(held), lambda n: n == 1, what="the send, held")
        assert held[0].request.headers["authorization"] == f"Bearer {first['token']}"
        await next_second(first)
        await page.clock.run_for(RENEWAL)
        second = await renewed(page, first)
        assert said[0][1] == first["token"]
        await eventually(
            said[0][0].is_closed, within=TTL + 30, what="the first token's stream closed"
        )
        await eventually(
            lambda: [t for _, t in said[1:]],
            lambda tokens: bool(tokens) and first["token"] not in tokens,
            what="a hello with a renewed token",
        )
        bearer = {"Authorization": f"Bearer {first['token']}"}

        async def status_with_first() -> int:
            async with http.get(f"{url}/v1/users/me", headers=bearer) as resp:
                return resp.status

        await eventually(status_with_first, lambda s: s == 401, what="the first token refused")
    await held[0].continue_()
    await page.wait_for_selector(
        "#messages .message[data-seq]:has-text('sent with the first token')"
    )
    assert await page.locator("#auth-error").count() == 0
    await page.fill("#compose", "after the first token")
    await page.press("#compose", "Enter")
    await page.wait_for_selector("#messages .message[data-seq]:has-text('after the first token')")
    assert await page.locator("#whoami").text_content() == f"Signed in as {second['username']}"
    assert await page.locator("#auth-error").count() == 0
    await page.context.close()


async def test_a_renewal_the_server_refuses_ends_the_session(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """4011 from the refresh route (session too old, user gone): the sign-in form, the
    usual words, the name filled in, and the draft back after signing in again. The
    server's 4002 at the token's expiry is kept from the page: only the refusal can end
    the session here."""
    page = await new_page(browser)
    await StreamTap(closes=False).attach(page)
    await page.route(REFRESH, lambda route: refuse(route, 401, "4011"))
    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
    name = (await token_of(page))["username"]
    await page.click(f".chat[data-cid='{cid}']")
    await page.fill("#compose", "half written")
    await page.clock.run_for(RENEWAL)
    await session_ended(page)
    assert await page.input_value("#username") == name
    await sign_in(page, name)
    await page.click(f".chat[data-cid='{cid}']")
    assert await page.input_value("#compose") == "half written"
    await page.context.close()


async def test_a_4002_after_a_renewal_reconnects_with_the_new_token(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """The server closes a stream with 4002 when the token of its hello expires, renewed
    or not. With a renewed token the page reconnects with it instead of signing out (a
    4002 with no renewal still ends the session: test_web_sessions.py)."""
    page = await new_page(browser)
    tap = StreamTap()
    await tap.attach(page)
    await sign_up(page, platform.gateway.url, "r" + unique("")[-12:])
    first = await token_of(page)
    await next_second(first)
    await page.clock.run_for(RENEWAL)
    second = await renewed(page, first)
    assert tap.tokens == [first["token"]]
    await tap.sockets[-1].close(code=4002, reason="token expired")
    await eventually(lambda: tap.tokens[-1], lambda t: t == second["token"], what="a new hello")
    await page.wait_for_selector("#status", state="hidden")  # live again
    assert await page.locator("#whoami").text_content() == f"Signed in as {second['username']}"
    await page.context.close()


async def test_a_tab_back_from_sleep_renews_at_once_or_ends_an_expired_session(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A sleeping machine's timers fire late, a hidden tab's seldom: the renewal happens
    when the tab runs again, and a token that expired meanwhile ends the session at once
    (before, the page waited for the server to refuse it). The clock is paused here so
    that only the tab showing again (visibilitychange) can start either."""
    page = await new_page(browser)
    reads = finished(page, "GET", "/v1/chats")
    name = "z" + unique("")[-12:]
    await sign_up(page, platform.gateway.url, name)
    # The chat list is read at sign-in and again after the stream's `ready`: both answers
    # are in before the clock jumps (each sets the page's idea of the server's clock).
    await eventually(lambda: len(reads), lambda n: n >= 2, what="the chat list read twice")
    first = await token_of(page)
    await next_second(first)
    now = await page.evaluate("Date.now()") / 1000
    await page.clock.pause_at(now + 1)
    await page.clock.set_system_time(now + RENEWAL / 1000)
    shows = "document.dispatchEvent(new Event('visibilitychange'))"
    await page.evaluate(shows)
    await renewed(page, first)  # on showing
    await page.clock.set_system_time(now + RENEWAL / 1000 + TTL + 10)
    await page.evaluate(shows)
    await session_ended(page)
    assert await page.input_value("#username") == name
    await page.context.close()


async def test_a_reload_counts_the_token_by_the_servers_clock(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A computer clock two minutes fast: at sign-in the Date header corrects it, but a
    reload judged the saved token by this clock alone, before any answer, and ended the
    session with its 60 s still ahead (found in review)."""
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    await page.clock.install(time=time.time() + 2 * TTL)
    name = "o" + unique("")[-12:]
    await sign_up(page, platform.gateway.url, name)
    before = await token_of(page)
    await page.reload()
    await page.wait_for_selector("#new-chat-names")
    assert await page.locator("#auth-error").count() == 0
    assert await token_of(page) == before
    await context.close()


async def test_a_request_on_its_way_during_a_renewal_still_counts(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """An answer for the token a renewal replaced belongs to the same session: a send on
    its way then ends as sent (it was taken for an answer to an ended session, and stayed
    'sending…' beside its own stored copy)."""
    page = await new_page(browser)
    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
    first = await token_of(page)
    held: list[Any] = []
    await page.route(f"**/v1/chats/{cid}/messages", lambda route: held.append(route))
    await page.click(f".chat[data-cid='{cid}']")
    await page.fill("#compose", "across a renewal")
    await page.press("#compose", "Enter")
    await eventually(lambda: len(held), lambda n: n == 1, what="the send, held")
    await next_second(first)
    await page.clock.run_for(RENEWAL)
    await renewed(page, first)
    await held[0].continue_()
    stored = page.locator("#messages .message[data-seq]:has-text('across a renewal')")
    await stored.wait_for()
    sending = page.locator("#messages .message.sending")
    await eventually(sending.count, lambda n: n == 0, what="no longer sending")
    assert await stored.count() == 1
    await page.context.close()


async def test_a_renewal_answered_after_sign_out_reaches_no_one(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A renewal still on its way when its user signs out, and someone else signs in:
    its answer (a token of the first user) is dropped."""
    url = platform.gateway.url
    page = await new_page(browser)
    held: list[Any] = []
    await page.route(REFRESH, lambda route: held.append(route))
    refreshes = finished(page, "POST", "/v1/auth/refresh")
    next_name = "n" + unique("")[-12:]
    async with aiohttp.ClientSession() as http:
        await User.sign_up(http, url, next_name)
    await sign_up(page, url, "o" + unique("")[-12:])
    await page.clock.run_for(RENEWAL)
    await eventually(lambda: len(held), lambda n: n == 1, what="the renewal, held")
    await page.click("#sign-out")
    await sign_in(page, next_name)
    await held[0].continue_()  # answered now, for the session that ended
    await eventually(lambda: len(refreshes), lambda n: n == 1, what="the renewal answered")
    assert (await token_of(page))["username"] == next_name
    assert await page.locator("#whoami").text_content() == f"Signed in as {next_name}"
    await page.context.close()


async def test_a_rate_limited_renewal_waits_as_long_as_retry_after_says(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """4290 with Retry-After: 5 (by the page's clock the next try comes no sooner, where
    the backoff alone would wait 2 s), then the renewal goes through and the session goes
    on. The token had about 10 s left: a longer wait would have ended the session."""
    page = await new_page(browser)
    tried: list[float] = []  # the page's clock at each try

    async def limited(route: Any) -> None:
        tried.append(await page.evaluate("Date.now()"))
        if len(tried) > 1:
            await route.continue_()
            return
        body = {"object": "error", "code": "4290", "message": "too many"}
        await route.fulfill(status=429, headers={"Retry-After": "5"}, json=body)

    await page.route(REFRESH, limited)
    await sign_up(page, platform.gateway.url, "l" + unique("")[-12:])
    first = await token_of(page)
    await next_second(first)
    await page.clock.run_for(RENEWAL)
    await renewed(page, first)  # the page's clock runs on as the machine's meanwhile
    assert len(tried) == 2 and tried[1] - tried[0] >= 5_000, tried
    assert await page.locator("#auth-error").count() == 0
    await page.context.close()
