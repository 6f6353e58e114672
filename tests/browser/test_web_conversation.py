"""One conversation in the web client, in a real browser, when something goes wrong:
read markers refused, chats switched while sends are on their way, an IME's Enter, a
message refused or too long, a history read failing (newest page or an older one)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st
from playwright.async_api import Browser, Page

from tests.browser.pages import (
    DESK,
    another_chat,
    chat_with_someone,
    let_the_first_page_in,
    message_texts,
    open_chat,
    refuse,
    requests_to,
    scrolled_to_top,
    token_of,
)
from tests.support.api_user import User
from tests.support.faults import Platform
from tests.support.waiting import eventually

#: What the server takes (contracts.records.TEXT_MAX), in characters (code points).
TEXT_MAX = 4096
SCROLL = "document.querySelector('.scroller').dispatchEvent(new Event('scroll'))"


async def test_a_read_marker_given_up_is_sent_again(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A PUT .../read refused (or failing five times) used to block that seq for good:
    the next scroll to the bottom and opening the chat again sent nothing."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, url, http, unique)
        elsewhere, title = await another_chat(page, url, http, unique)
        await other.post(cid, "read me")
        marks: list[int] = []

        async def answer(route: Any) -> None:  # the first and the third are refused
            marks.append(json.loads(route.request.post_data)["seq"])
            if len(marks) in (1, 3):
                await refuse(route, 400, "4000")
            else:
                await route.continue_()

        await page.route(f"**/v1/chats/{cid}/read", answer)
        await page.click(f".chat[data-cid='{cid}']")
        await eventually(lambda: list(marks), lambda m: m == [1], what="the marker, refused")

        async def scrolled() -> list[int]:  # at the bottom again, until it goes
            await page.evaluate(SCROLL)
            return list(marks)

        await eventually(scrolled, lambda m: m == [1, 1], what="sent again on a scroll")
        await other.post(cid, "and me")
        await eventually(lambda: list(marks), lambda m: m == [1, 1, 2], what="refused again")

        async def reopened() -> list[int]:  # opened again, until it goes
            await open_chat(page, elsewhere, title)
            await page.click(f".chat[data-cid='{cid}']")
            await page.wait_for_selector("#messages .message:has-text('and me')")
            return list(marks)

        found = await eventually(reopened, lambda m: len(m) >= 4, what="sent on opening it")
    assert found[:4] == [1, 1, 2, 2]
    await context.close()


async def test_drafts_and_unsent_messages_stay_with_their_chat(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """Another chat opened, or the open one clicked again, used to drop the draft and the
    messages still sending or failed (with their Retry)."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, url, http, unique)
        elsewhere, title = await another_chat(page, url, http, unique)
    held: list[Any] = []

    async def posts(route: Any) -> None:  # the first fails, the second waits for the test
        if "will fail" in (route.request.post_data or ""):
            await refuse(route, 503, "5031")
        else:
            held.append(route)

    await page.route(f"**/v1/chats/{cid}/messages", posts)
    await page.click(f".chat[data-cid='{cid}']")
    await page.fill("#compose", "will fail")
    await page.press("#compose", "Enter")
    failed = page.locator("#messages .message.failed:has-text('will fail')")
    await failed.wait_for()
    await page.fill("#compose", "half written")

    await page.evaluate("document.querySelector('.conversation').dataset.before = 'yes'")
    await page.click(f".chat[data-cid='{cid}']")  # the open chat, clicked again: left as it is
    assert await page.locator(".conversation[data-before=yes]").count() == 1
    assert await page.input_value("#compose") == "half written"
    assert await failed.count() == 1

    await page.fill("#compose", "slow one")
    await page.press("#compose", "Enter")
    await page.wait_for_selector("#messages .message.sending:has-text('slow one')")
    await page.fill("#compose", "still half written")
    await open_chat(page, elsewhere, title)
    assert await page.input_value("#compose") == ""
    await eventually(lambda: len(held), lambda n: n == 1, what="the slow send, held")
    await refuse(held[0], 503, "5031")  # it ends while its chat is not open

    await page.click(f".chat[data-cid='{cid}']")
    await page.wait_for_selector("#messages .message.failed:has-text('slow one')")
    assert await failed.count() == 1
    assert await page.input_value("#compose") == "still half written"
    await page.unroute(f"**/v1/chats/{cid}/messages")
    await failed.locator("button:has-text('Retry')").click()
    await page.wait_for_selector("#messages .message[data-seq]:has-text('will fail')")
    await context.close()


async def test_an_enter_that_ends_an_ime_composition_does_not_send(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
    await page.click(f".chat[data-cid='{cid}']")
    await page.fill("#compose", "ni")
    await page.dispatch_event("#compose", "keydown", {"key": "Enter", "isComposing": True})
    await page.fill("#compose", "niha")
    await page.dispatch_event("#compose", "keydown", {"key": "Enter", "keyCode": 229})
    await page.fill("#compose", "nihao")
    await page.press("#compose", "Enter")
    await page.wait_for_selector("#messages .message[data-seq]:has-text('nihao')")
    # Its own pending copy goes once the answer came, whichever came first.
    await eventually(lambda: message_texts(page), lambda t: t == ["nihao"], what="one message")
    await context.close()


async def test_a_refused_message_offers_edit_and_discard(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A 4xx other than 408/429 would be refused again: a Retry button would fail for
    ever. The reason shows, with Edit (back into the composer) and Discard."""
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
    await page.route(f"**/v1/chats/{cid}/messages", lambda r: refuse(r, 403, "4031"))
    await page.click(f".chat[data-cid='{cid}']")
    refused = page.locator("#messages .message.refused")
    for text in ("first try", "second try"):
        await page.fill("#compose", text)
        await page.press("#compose", "Enter")
    await eventually(refused.count, lambda n: n == 2, what="both refused")
    assert (
        await refused.locator(".state").all_text_contents()
        == ["You are not a member of that chat."] * 2
    )
    assert await refused.locator("button").all_text_contents() == ["Edit", "Discard"] * 2

    await page.fill("#compose", "meanwhile")
    await refused.first.locator("button:has-text('Edit')").click()
    assert await page.input_value("#compose") == "first try\nmeanwhile"
    await refused.first.locator("button:has-text('Discard')").click()
    assert await refused.count() == 0
    await context.close()


async def test_a_message_over_the_limit_is_stopped_before_sending(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """The limit counts characters (code points) as the server does, not UTF-16 units:
    4096 characters go, 1000 of them emoji (5096 units; the test gateway's 8 KB body limit
    leaves no room for more)."""
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
    posted = requests_to(page, "POST", "/messages")
    await page.click(f".chat[data-cid='{cid}']")
    await page.fill("#compose", "x" * (TEXT_MAX + 1))
    await page.press("#compose", "Enter")
    error = page.locator("#compose-error")
    await eventually(error.text_content, lambda t: "Too long" in (t or ""), what="the limit")
    assert "4097 characters, at most 4096" in (await error.text_content() or "")
    assert await page.input_value("#compose") == "x" * (TEXT_MAX + 1)

    fits = "\N{GRINNING FACE}" * 1000 + "x" * (TEXT_MAX - 1000)
    await page.fill("#compose", fits)
    assert await error.text_content() == ""  # the text fits now: the message goes
    await page.press("#compose", "Enter")
    await page.wait_for_selector("#messages .message[data-seq]")
    await eventually(lambda: message_texts(page), lambda t: t == [fits], what="one message")
    assert len(posted) == 1
    await context.close()


#: Texts around the limit, of characters one or two UTF-16 units long, or combining.
TEXTS = st.builds(
    lambda n, chars: (chars * n)[:n],
    st.integers(TEXT_MAX - 3, TEXT_MAX + 3),
    st.text(min_size=1, max_size=4),
) | st.text(max_size=50)


async def test_the_limit_counts_what_the_server_counts(
    platform: Platform, browser: Browser
) -> None:
    """conversation.js's tooLong() against Python's len(), which the server applies."""
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(platform.gateway.url)
    await page.wait_for_selector("#username")
    loop = asyncio.get_running_loop()

    def too_long(page: Page, text: str) -> Any:
        check = "async (t) => (await import('/app/conversation.js')).tooLong(t)"
        return asyncio.run_coroutine_threadsafe(page.evaluate(check, text), loop).result(60)

    @settings(max_examples=200)
    @given(TEXTS)
    def agrees(text: str) -> None:
        said = too_long(page, text)
        assert bool(said) == (len(text) > TEXT_MAX)
        assert not said or f"{len(text)} characters" in said

    await asyncio.to_thread(agrees)  # hypothesis runs examples in a thread; the page here
    await context.close()


async def test_a_live_message_does_not_mark_an_unread_chat_read(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """Its newest page never came (the problem shows): a live message used to mark the
    whole chat read, messages never shown included."""
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
        await other.post(cid, "never shown")
        badge = page.locator(f".chat[data-cid='{cid}'] .badge")
        await eventually(badge.text_content, lambda t: t == "1", what="1 unread")
        pattern = f"**/v1/chats/{cid}/messages?*"
        await page.route(pattern, lambda route: refuse(route, 503, "5030"))
        await page.click(f".chat[data-cid='{cid}']")
        await page.locator("#messages .problem").wait_for()
        await other.post(cid, "came live")
        await page.wait_for_selector("#messages .message:has-text('came live')")
    assert await badge.text_content() == "2"  # drawn in the same task as the message
    await page.unroute(pattern)
    await page.locator("#messages .problem button").click()
    await page.wait_for_selector("#messages .message:has-text('never shown')")
    await eventually(badge.count, lambda n: n == 0, what="read once both are shown")
    await context.close()


async def test_an_older_page_that_failed_offers_a_retry(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """At the top already, no scroll event comes to try again: a Retry button does."""
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
        for i in range(60):
            await other.post(cid, f"m {i}")
        await eventually(lambda: other.history(cid), lambda h: len(h) == 60, what="stored")
    pattern = f"**/v1/chats/{cid}/messages?*before=*"
    await page.route(pattern, lambda route: refuse(route, 503, "5030"))
    await page.click(f".chat[data-cid='{cid}']")
    await page.wait_for_selector("#messages .message:has-text('m 59')")
    await scrolled_to_top(page)
    problem = page.locator("#messages .more.problem")
    await problem.wait_for()
    assert "Could not read older messages" in (await problem.text_content() or "")
    await page.unroute(pattern)
    await problem.locator("button:has-text('Retry')").click()
    every = [f"m {i}" for i in range(60)]
    await eventually(lambda: message_texts(page), lambda t: t == every, what="the older page")
    await context.close()


async def test_a_send_that_failed_before_the_chat_could_be_read_stays_failed(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A send made while the newest page was not held recorded 0 as the newest seq it
    knew, so an old message of ours with the same text, read once the page came, was
    taken for it: the failed copy and its Retry went, and the message was never sent."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, url, http, unique)
        me = User(http, url, await token_of(page))
        await me.post(cid, "ok")
        await page.wait_for_selector(f".chat[data-cid='{cid}'] .preview:has-text('ok')")

    async def down(route: Any) -> None:  # no worker answers: reads 5030, sends 5031
        await refuse(route, 503, "5030" if route.request.method == "GET" else "5031")

    await page.route(f"**/v1/chats/{cid}/messages*", down)
    await page.click(f".chat[data-cid='{cid}']")
    await page.wait_for_selector("#messages .problem")
    await page.fill("#compose", "ok")
    await page.press("#compose", "Enter")
    failed = page.locator("#messages .message.failed:has-text('ok')")
    await failed.wait_for()
    await page.unroute(f"**/v1/chats/{cid}/messages*")
    await page.locator("#messages .problem button:has-text('Retry')").click()
    await page.wait_for_selector("#messages .message[data-seq='1']:has-text('ok')")
    assert await failed.count() == 1
    await context.close()


async def test_a_focused_retry_keeps_the_focus_when_a_message_arrives(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """The conversation is built again on every message: a keyboard user's focus on a
    failed send's Retry fell back to the page's top (found in review)."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, url, http, unique)

        async def refused(route: Any) -> None:
            if route.request.method == "POST":
                await refuse(route, 503, "5031")
            else:
                await route.continue_()

        await page.route(f"**/v1/chats/{cid}/messages*", refused)
        await _fail_a_send_and_focus_its_retry(page, cid)
        await other.post(cid, "meanwhile")
        await page.wait_for_selector("#messages .message[data-seq]:has-text('meanwhile')")
    assert await _focused(page) == ["Retry", "failed"]
    await page.unroute_all(behavior="ignoreErrors")
    await context.close()


async def _fail_a_send_and_focus_its_retry(page: Page, cid: str) -> None:
    """Open the chat, send a message the route refuses, and focus its Retry button."""
    await page.click(f".chat[data-cid='{cid}']")
    await page.fill("#compose", "will fail")
    await page.press("#compose", "Enter")
    await page.locator("#messages .message.failed button:has-text('Retry')").focus()


async def _focused(page: Page) -> Any:
    """The focused element's text, and the state of the message it belongs to."""
    return await page.evaluate(
        "[document.activeElement.textContent, document.activeElement.closest('li')?.dataset.state]"
    )


async def test_a_focus_taken_while_the_chat_loads_is_kept_when_it_has_loaded(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """Opening a chat focused the composer once its first page came: a user who had
    meanwhile focused a failed send's Retry lost it (found when the test above failed
    under a loaded CI machine, where the first page came late)."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    release = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, url, http, unique)
        await other.post(cid, "sent before")

        async def slow_history(route: Any) -> None:
            if route.request.method == "POST":
                await refuse(route, 503, "5031")
                return
            await release.wait()  # the first page comes once Retry has the focus
            await route.continue_()

        await page.route(f"**/v1/chats/{cid}/messages*", slow_history)
        await _fail_a_send_and_focus_its_retry(page, cid)
        await let_the_first_page_in(page, release)
        await page.wait_for_selector("#messages .message[data-seq]:has-text('sent before')")
    assert await _focused(page) == ["Retry", "failed"]
    await page.unroute_all(behavior="ignoreErrors")
    await context.close()


async def test_typing_elsewhere_while_the_chat_loads_is_not_taken_into_the_composer(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A user who opened a chat whose first page was slow and meanwhile typed a name into
    the new-chat form had the focus moved to the composer when the page came: the rest of
    the name, and its Enter, went out as a message (found in review)."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    release = asyncio.Event()
    posts: list[str] = []
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, url, http, unique)
        await other.post(cid, "sent before")

        async def slow_history(route: Any) -> None:
            if route.request.method == "POST":
                posts.append(route.request.url)
                await route.continue_()
                return
            await release.wait()  # the first page comes while a name is being typed
            await route.continue_()

        await page.route(f"**/v1/chats/{cid}/messages*", slow_history)
        await page.click(f".chat[data-cid='{cid}']")
        await page.click("#new-chat-names")
        await page.keyboard.type("bobb")
        await let_the_first_page_in(page, release)
        await page.wait_for_selector("#messages .message[data-seq]:has-text('sent before')")
        await page.keyboard.type("y_b")
        assert await page.evaluate("document.activeElement.id") == "new-chat-names"
        assert await page.input_value("#new-chat-names") == "bobby_b"
        assert await page.input_value("#compose") == ""
    assert posts == []
    await page.unroute_all(behavior="ignoreErrors")
    await context.close()


async def test_a_page_without_random_uuid_still_sends_with_a_key(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """crypto.randomUUID exists on secure pages only: served over plain HTTP on another
    address than loopback (compose's PUBLISH_ADDR=0.0.0.0), the send threw after the
    composer was cleared, and the text was lost (found in review). The browser here
    serves loopback, a secure context, so the page is given none."""
    context = await browser.new_context(viewport=DESK)
    await context.add_init_script("delete Crypto.prototype.randomUUID")
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
    keys: list[str] = []
    page.on(
        "request",
        lambda r: (
            keys.append(r.headers.get("idempotency-key", ""))
            if r.method == "POST" and r.url.endswith("/messages")
            else None
        ),
    )
    await page.click(f".chat[data-cid='{cid}']")
    await page.fill("#compose", "sent without randomUUID")
    await page.press("#compose", "Enter")
    await eventually(
        lambda: message_texts(page), lambda t: t == ["sent without randomUUID"], what="sent"
    )
    [key] = keys
    assert len(key) == 32 and int(key, 16) >= 0  # 128 random bits, in hex
    await context.close()
