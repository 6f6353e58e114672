"""The web client's chat list, in a real browser: a stream frame that could not be
handled, the time shown for an old last message, starting a chat, and the keyboard focus."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
from playwright.async_api import Browser

from tests.browser.pages import (
    DESK,
    ONE_CHAT,
    StreamTap,
    another_chat,
    let_the_first_page_in,
    refuse,
    requests_to,
    sign_up,
    token_of,
)
from tests.support.api_user import User
from tests.support.faults import Platform
from tests.support.waiting import eventually

#: 2001-06-01T12:00:00Z: a last message long ago.
LONG_AGO = 991_396_800


async def test_a_frame_that_could_not_be_handled_reads_the_list_again(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A new chat's frame whose chat read failed used to leave the error on the status
    line and the chat out of the list until the next reconnect."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    refused: list[str] = []

    async def once(route: Any) -> None:
        if refused:
            await route.continue_()
        else:
            refused.append(route.request.url)
            await refuse(route, 503, "5030")

    await page.route(ONE_CHAT, once)
    async with aiohttp.ClientSession() as http:
        await sign_up(page, url, "k" + unique("")[-12:])
        me = await token_of(page)
        other = await User.sign_up(http, url, "l" + unique("")[-12:])
        chat = await other.call("POST", "/v1/chats", json={"users": [other.id, me["userId"]]})
    await page.wait_for_selector("#status", state="visible")  # the failure, said
    await page.wait_for_selector(f".chat[data-cid='{chat['id']}']")  # the list, read again
    await page.wait_for_selector("#status", state="hidden")
    assert len(refused) == 1
    await context.close()


async def test_an_old_last_message_shows_its_date(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK, locale="en-US")
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        await sign_up(page, url, "m" + unique("")[-12:])
        me = await token_of(page)
        other = await User.sign_up(http, url, "n" + unique("")[-12:])
        chat = await other.call("POST", "/v1/chats", json={"users": [other.id, me["userId"]]})
        await other.post(chat["id"], "long ago")

    async def aged(route: Any) -> None:  # the list as if that message were from 2001
        response = await route.fetch()
        body = await response.json()
        for each in body["data"]:
            if each["lastMessage"]:
                each["lastMessage"]["createdAt"] = LONG_AGO
        await route.fulfill(response=response, json=body)

    await page.route("**/v1/chats?*", aged)
    await page.reload()
    when = page.locator(f".chat[data-cid='{chat['id']}'] .when")
    await when.wait_for()
    assert "2001" in (await when.text_content() or "")
    # A list read still in flight would fail in its handler as the context closes.
    await page.unroute_all(behavior="ignoreErrors")
    await context.close()


async def test_starting_a_chat_twice_at_once_starts_one(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """The form had no guard: a double click or a second Enter while the first was on its
    way created two chats with the same people."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        await sign_up(page, url, "s" + unique("")[-12:])
        name = "t" + unique("")[-12:]
        await User.sign_up(http, url, name)
    looked_up = requests_to(page, "GET", "/v1/users")
    created = requests_to(page, "POST", "/v1/chats")
    await page.fill("#new-chat-names", name)
    await page.evaluate(
        "() => { const f = document.querySelector('form.new-chat');"
        " f.requestSubmit(); f.requestSubmit(); }"
    )
    await page.wait_for_selector(f"#chat-title:has-text('{name}')")
    await page.wait_for_function("!document.querySelector('form.new-chat button').disabled")
    assert len([u for u in looked_up if "username=" in u]) == 1 and len(created) == 1
    assert await page.locator(".chat").count() == 1
    await context.close()


async def test_the_focused_chat_keeps_the_focus_when_the_list_changes(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """The list is built again on every change; the focus fell back to the page's top at
    every message in any chat, so the list could not be used from the keyboard."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        await sign_up(page, url, "u" + unique("")[-12:])
        me = await token_of(page)
        other = await User.sign_up(http, url, "v" + unique("")[-12:])
        first = await other.call("POST", "/v1/chats", json={"users": [other.id, me["userId"]]})
        second, _ = await another_chat(page, url, http, unique)
        await page.focus(f".chat[data-cid='{first['id']}']")
        await other.post(first["id"], "moves the list")
        await page.wait_for_selector(f".chat[data-cid='{first['id']}'] .badge")
    focused = await page.evaluate("document.activeElement.getAttribute('data-cid')")
    assert focused == first["id"] and second != first["id"]
    await context.close()


async def test_a_name_typed_in_another_case_or_width_finds_its_user(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """The server finds "Straße" for "STRASSE" (NFKC, then case folding); the form
    compared with toLowerCase, and named the users it had found as unknown (found in
    review)."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    suffix = unique("")[-8:].replace("-", "")
    name = f"straße{suffix}"
    async with aiohttp.ClientSession() as http:
        await sign_up(page, url, "s" + unique("")[-12:])
        await User.sign_up(http, url, name)
    typed = f"STRASSE{suffix.upper()}"
    await page.fill("#new-chat-names", f"{typed}, nobody{suffix}")
    await page.click("form.new-chat button")
    await page.wait_for_selector("#new-chat-error:has-text('No user named')")
    said = await page.locator("#new-chat-error").text_content()
    assert said == f"No user named nobody{suffix}."
    await page.fill("#new-chat-names", typed)
    await page.click("form.new-chat button")
    await page.wait_for_selector(f"#chat-title:has-text('{name}')")
    await context.close()


async def test_a_username_with_a_comma_can_be_reached(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """The form splits what is typed on commas, and a username may hold one: "doe, jane"
    was looked up as "doe" and "jane", and could not be reached (found in review). The
    whole text is looked up too and taken when the parts are not all users."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    suffix = unique("")[-8:].replace("-", "")
    name = f"doe{suffix}, jane"
    async with aiohttp.ClientSession() as http:
        await sign_up(page, url, "c" + unique("")[-12:])
        await User.sign_up(http, url, name)
        other = "e" + unique("")[-12:]
        await User.sign_up(http, url, other)
    await page.fill("#new-chat-names", name)
    await page.click("form.new-chat button")
    await page.wait_for_selector(f"#chat-title:has-text('{name}')")
    await page.fill("#new-chat-names", f"{other}, nobody{suffix}")  # still names apart
    await page.click("form.new-chat button")
    await page.wait_for_selector("#new-chat-error:has-text('No user named')")
    assert await page.locator("#new-chat-error").text_content() == f"No user named nobody{suffix}."
    await context.close()


async def test_a_chat_started_with_enter_leaves_the_focus_in_its_composer(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """Started from the keyboard (a name, then Enter), the new chat's composer had the
    focus; a change that kept the focus in any text field left it in the names field, and
    the first message typed went into a user look-up (found in review)."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        await sign_up(page, url, "f" + unique("")[-12:])
        name = "g" + unique("")[-12:]
        await User.sign_up(http, url, name)
    await page.fill("#new-chat-names", name)
    await page.press("#new-chat-names", "Enter")
    await page.wait_for_selector(f"#chat-title:has-text('{name}')")
    await eventually(
        lambda: page.evaluate("document.activeElement.id"),
        lambda focused: focused == "compose",
        what="the composer focused once the chat has loaded",
    )
    await context.close()


async def test_a_name_typed_again_while_the_new_chat_loads_stays_in_its_field(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """Started with Enter, the focus stays in the names field while the chat loads: a
    user typing the next name there had the rest of it taken into the composer when the
    page came (found in review)."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    release = asyncio.Event()

    async def slow_history(route: Any) -> None:
        await release.wait()
        await route.continue_()

    async with aiohttp.ClientSession() as http:
        await sign_up(page, url, "j" + unique("")[-12:])
        name = "k" + unique("")[-12:]
        await User.sign_up(http, url, name)
    await page.route("**/v1/chats/*/messages*", slow_history)
    await page.fill("#new-chat-names", name)
    await page.press("#new-chat-names", "Enter")
    await page.wait_for_selector(f"#chat-title:has-text('{name}')")
    await page.keyboard.type("next")
    await let_the_first_page_in(page, release)
    await page.keyboard.type("name")
    assert await page.input_value("#new-chat-names") == "nextname"
    assert await page.input_value("#compose") == ""
    await page.unroute_all(behavior="ignoreErrors")
    await context.close()


async def test_a_chat_pressed_while_a_message_moves_the_list_opens_when_released(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """The list was built anew at every message: a press on a chat while a message came
    in elsewhere was released on another button (new, or moved down by the chat that
    went to the top), and no chat opened (found in review). The list waits for the
    release."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    tap = StreamTap()
    await tap.attach(page)
    async with aiohttp.ClientSession() as http:
        await sign_up(page, url, "p" + unique("")[-12:])
        me = User(http, url, await token_of(page))
        first_name = "q" + unique("")[-12:]
        first = await User.sign_up(http, url, first_name)
        second = await User.sign_up(http, url, "r" + unique("")[-12:])
        pressed = await first.chat_with(me)
        busy = await second.chat_with(me)
        await page.wait_for_selector(f".chat[data-cid='{pressed}']")
        await page.wait_for_selector(f".chat[data-cid='{busy}']")
        await second.post(busy, "before")  # the busy chat on top, the pressed one below
        await page.wait_for_selector(f".chat[data-cid='{busy}'] .preview:has-text('before')")
        box = await page.locator(f".chat[data-cid='{pressed}']").bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await page.mouse.down()
        frames = len(tap.frames)
        await second.post(busy, "while pressed")
        await eventually(
            lambda: [f for f in tap.frames[frames:] if "while pressed" in f],
            what="the message's frame at the page",
        )
        # Two frames and a task: had the list been rebuilt for it, it would be by now.
        await page.evaluate(
            "() => new Promise((r) => requestAnimationFrame("
            "() => requestAnimationFrame(() => setTimeout(r))))"
        )
        await page.mouse.up()
        await page.wait_for_selector(f"#chat-title:has-text('{first_name}')")
        await page.wait_for_selector(f".chat[data-cid='{busy}'] .preview:has-text('while pressed')")
    await context.close()


async def test_a_press_the_browser_never_ends_does_not_hold_the_list(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A right click opens a context menu, and the page is told of no release: the press
    it started held the lists until the next click anywhere, and no message showed
    (found in review). Only the primary button holds them."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        await sign_up(page, url, "h" + unique("")[-12:])
        me = User(http, url, await token_of(page))
        other = await User.sign_up(http, url, "i" + unique("")[-12:])
        cid = await other.chat_with(me)
        await page.wait_for_selector(f".chat[data-cid='{cid}']")
        box = await page.locator(f".chat[data-cid='{cid}']").bounding_box()
        assert box is not None
        await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        await page.mouse.down(button="right")  # and no release, as under a context menu
        await other.post(cid, "shown all the same")
        await page.wait_for_selector(f".chat[data-cid='{cid}'] .preview:has-text('shown all')")
        await page.mouse.up(button="right")
    await context.close()


async def test_chats_with_messages_in_one_second_are_listed_newest_first(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """Activity is whole seconds: of two chats with messages in one second, the list
    kept the one it had first seen on top, whichever had the newer message (found in
    review). The one that moved last now goes first, as the server lists them."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        await sign_up(page, url, "w" + unique("")[-12:])
        me = User(http, url, await token_of(page))
        first = await User.sign_up(http, url, "x" + unique("")[-12:])
        second = await User.sign_up(http, url, "y" + unique("")[-12:])
        older = await first.chat_with(me)
        newer = await second.chat_with(me)
        await page.wait_for_selector(f".chat[data-cid='{older}']")
        await page.wait_for_selector(f".chat[data-cid='{newer}']")
        await first.post(older, "one")
        # Each after the other: two chats' events may come in either order (partitions).
        await page.wait_for_selector(f".chat[data-cid='{older}'] .preview:has-text('one')")
        await second.post(newer, "two")
        await page.wait_for_selector(f".chat[data-cid='{newer}'] .preview:has-text('two')")
        listed = await page.locator("#chat-list .chat").evaluate_all(
            "(buttons) => buttons.map((b) => b.dataset.cid)"
        )
    assert listed == [newer, older]
    await context.close()
