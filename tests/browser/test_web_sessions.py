"""Sessions of the web client, in a real browser: one sign-in per submit, nothing of an
ended session reaching the next one, and a draft kept over a sign-in the server forced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from playwright.async_api import Browser, WebSocket

from tests.browser.pages import (
    DESK,
    ONE_CHAT,
    StreamTap,
    chat_with_someone,
    requests_to,
    sign_in,
    sign_up,
    token_of,
)
from tests.support.api_user import User
from tests.support.faults import PASSWORD, Platform
from tests.support.waiting import eventually


async def test_a_double_click_on_sign_in_starts_one_session(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """Two submits used to start two sessions; signing out stopped only the second one's
    stream, and the first one's later signed out whoever used the tab next."""
    url = platform.gateway.url
    name = "s" + unique("")[-12:]
    async with aiohttp.ClientSession() as http:
        await User.sign_up(http, url, name)
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    sockets: list[WebSocket] = []

    def opened(socket: WebSocket) -> None:  # Playwright cannot take list.append itself
        sockets.append(socket)

    page.on("websocket", opened)
    sign_ins = requests_to(page, "POST", "/v1/auth/sign-in")
    await page.goto(url)
    await page.fill("#username", name)
    await page.fill("#password", PASSWORD)
    double_click = "const b = document.querySelector('button[value=in]'); b.click(); b.click();"
    await page.evaluate(f"() => {{ {double_click} }}")
    await page.wait_for_selector("#new-chat-names")
    await eventually(lambda: len(sockets), lambda n: n >= 1, what="the stream opened")
    await page.click("#sign-out")
    await page.wait_for_selector("#username")
    await eventually(
        lambda: [ws.is_closed() for ws in sockets],
        lambda closed: all(closed),
        what="every stream closed on signing out",
    )
    assert len(sign_ins) == 1
    await context.close()


async def test_an_answer_for_an_ended_session_reaches_no_one(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A read still on its way when its user signs out used to land in the next user's
    chat list (and a 401 for the old token would sign the new user out)."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    held: list[Any] = []

    async def hold_first(route: Any) -> None:
        if held:
            await route.continue_()
        else:
            held.append(route)

    await page.route(ONE_CHAT, hold_first)
    async with aiohttp.ClientSession() as http:
        await sign_up(page, url, "h" + unique("")[-12:])
        first = await token_of(page)
        other = await User.sign_up(http, url, "i" + unique("")[-12:])
        next_name = "j" + unique("")[-12:]
        after = await User.sign_up(http, url, next_name)
        theirs = await other.chat_with(User(http, url, first))
        await eventually(lambda: len(held), lambda n: n == 1, what="its chat's read, held")
        await page.click("#sign-out")
        await sign_in(page, next_name)
        await held[0].continue_()  # answered now, for the session that ended
        mine = await other.chat_with(after)
        await page.wait_for_selector(f".chat[data-cid='{mine}']")
    # Before the fix the next user's list and frames queued behind the held read: by now
    # its answer had been handled.
    assert await page.locator(f".chat[data-cid='{theirs}']").count() == 0
    assert await page.locator("#whoami").text_content() == f"Signed in as {next_name}"
    await context.close()


async def test_the_last_message_read_out_goes_with_its_session(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """The screen readers' live region kept the last message that came in after its
    user signed out, for whoever used the tab next (found in review)."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, url, http, unique)
        await page.click(f".chat[data-cid='{cid}']")
        await page.wait_for_selector("#compose")
        await other.post(cid, "the door code is 4711")
        await page.wait_for_selector("#announcer:has-text('the door code is 4711')")
        await page.click("#sign-out")
        await page.wait_for_selector("#username")
    assert await page.locator("#announcer").text_content() == ""
    await context.close()


async def test_a_draft_outlives_a_sign_in_the_server_forced(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """The stream closed with 4002 (token expired): the sign-in form has the name filled
    in, and after signing in the chat's draft is back."""
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    tap = StreamTap()
    await tap.attach(page)
    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
    name = (await token_of(page))["username"]
    await page.click(f".chat[data-cid='{cid}']")
    await page.fill("#compose", "half written")
    await tap.sockets[-1].close(code=4002, reason="token expired")
    error = page.locator("#auth-error")
    await eventually(error.text_content, lambda t: "session has ended" in (t or ""), what="why")
    assert await page.input_value("#username") == name
    await sign_in(page, name)
    await page.click(f".chat[data-cid='{cid}']")
    assert await page.input_value("#compose") == "half written"
    await context.close()


async def test_a_draft_outlives_a_reload_and_goes_with_a_sign_out(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A reload (or a tab the browser discarded and brought back) lost every draft: they
    were kept in the page's memory, in sessionStorage only when the server ended the
    session (found in review). A sign-out the user chose leaves none for the next one."""
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
    name = (await token_of(page))["username"]
    await page.click(f".chat[data-cid='{cid}']")
    await page.fill("#compose", "half written")
    await page.reload()
    await page.click(f".chat[data-cid='{cid}']")
    assert await page.input_value("#compose") == "half written"
    await page.click("#sign-out")
    await sign_in(page, name)
    await page.click(f".chat[data-cid='{cid}']")
    assert await page.input_value("#compose") == ""
    await context.close()
