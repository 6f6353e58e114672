"""The web client in a real browser (Debian's chromium, driven by Playwright for Python).

Two people in two browser contexts, one at desktop and one at phone width, on the real
platform (gateway, workers, Kafka, FerretDB, MariaDB): sign-up, a chat started by
username, live messages both ways, unread badges, 200 older messages paged in by
scrolling up, ten seconds offline, and a message that looks like HTML rendered as text.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext

from tests.browser.pages import (
    DESK,
    PHONE,
    StreamTap,
    another_chat,
    chat_with_someone,
    message_texts,
    open_chat,
    refuse,
    scrolled_to_top,
    sign_up,
    token_of,
)
from tests.support.api_user import User
from tests.support.faults import Platform
from tests.support.waiting import eventually, hold

REPO = Path(__file__).resolve().parents[2]
XSS = "<img src=x onerror=alert(1)>"
#: First load budget of the page's scripts and styles, compressed.
BUDGET = 150 * 1024


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go: SCREENSHOTS_DIR=docs/screenshots refreshes the README's;
    otherwise a temporary folder, so a test run changes no tracked file."""
    wanted = os.environ.get("SCREENSHOTS_DIR")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def test_two_people_chat_in_the_browser(
    platform: Platform, browser: Browser, unique: Callable[[str], str], screenshots: Path
) -> None:
    url = platform.gateway.url
    desk: BrowserContext = await browser.new_context(viewport=DESK)
    phone: BrowserContext = await browser.new_context(viewport=PHONE)
    alice, bob = await desk.new_page(), await phone.new_page()
    dialogs: list[str] = []
    for page in (alice, bob):
        page.on("dialog", lambda d: dialogs.append(d.message))
    alice_name, bob_name = "a" + unique("")[-12:], "b" + unique("")[-12:]
    await sign_up(alice, url, alice_name)
    await sign_up(bob, url, bob_name)

    # Alice starts a chat by Bob's username and writes; Bob's list shows it, unread.
    await alice.fill("#new-chat-names", bob_name)
    await alice.click(".new-chat button[type=submit]")
    await alice.wait_for_selector(f"#chat-title:has-text('{bob_name}')")
    await alice.fill("#compose", "hello bob")
    await alice.press("#compose", "Enter")
    badge = bob.locator(".chat .badge")
    await badge.wait_for()
    assert await badge.text_content() == "1"
    assert await bob.locator(".chat .preview").text_content() == "hello bob"

    # Bob opens it: the message is there, the badge goes; his answer reaches Alice live.
    await bob.click(".chat")
    await bob.wait_for_selector("#messages .message:has-text('hello bob')")
    await bob.fill("#compose", "hi alice\nsecond line")  # Shift+Enter would make the same
    await bob.press("#compose", "Enter")
    await alice.wait_for_selector("#messages .message:has-text('hi alice')")
    await bob.click(".back")
    await eventually(lambda: badge.count(), lambda n: n == 0, what="Bob's badge cleared")

    # A message that looks like HTML is shown as those characters.
    await alice.fill("#compose", XSS)
    await alice.press("#compose", "Enter")
    await bob.click(".chat")
    await bob.wait_for_selector("#messages .message:has-text('onerror')")
    assert XSS in await message_texts(bob)
    assert await bob.locator("#messages img").count() == 0 and dialogs == []

    # Ten seconds offline while Alice writes: everything arrives after, nothing twice.
    await phone.set_offline(True)
    for i in range(5):
        await alice.fill("#compose", f"while away {i}")
        await alice.press("#compose", "Enter")
    await bob.wait_for_selector("#status:has-text('Reconnecting')")
    await hold(10)  # the outage itself
    await phone.set_offline(False)
    await bob.wait_for_selector("#status", state="hidden")  # live again
    away = [f"while away {i}" for i in range(5)]
    texts = await eventually(
        lambda: message_texts(bob),
        lambda found: all(t in found for t in away),
        what="the messages written while Bob was offline",
    )
    assert [t for t in texts if t.startswith("while away")] == away

    await alice.screenshot(path=str(screenshots / "conversation-desktop.png"))
    await bob.click(".back")
    await bob.screenshot(path=str(screenshots / "chat-list-phone.png"))
    await desk.close()
    await phone.close()


async def test_two_hundred_older_messages_come_in_by_scrolling_up(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, url, http, unique)
        for i in range(200):
            await other.post(cid, f"old {i}")
        await eventually(lambda: other.history(cid), lambda h: len(h) == 200, what="stored")
    await page.reload()  # revalidated (304): the page must still run
    await page.click(f".chat[data-cid='{cid}']")
    await page.wait_for_selector("#messages .message:has-text('old 199')")

    everything = [f"old {i}" for i in range(200)]
    await eventually(
        lambda: scrolled_to_top(page), lambda t: t == everything, what="all 200 paged in"
    )
    await context.close()


async def test_a_reconnect_resumes_the_open_chat_from_the_messages_it_holds(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """The hello names, for the open chat, the newest seq it shows, not the chat list's
    lastSeq: `ready` comes before the catch-up, and the list read on `ready` used to
    move the resume point past messages still on their way. The stream is routed through
    Playwright, which drops the chat's message frames until the end, and cut twice."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    tap = StreamTap()
    await tap.attach(page)
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, url, http, unique)
        await other.post(cid, "seen 1")
        await page.click(f".chat[data-cid='{cid}']")
        await page.wait_for_selector("#messages .message:has-text('seen 1')")

        tap.dropping = True  # seqs 2..4 never reach the page on this socket or the next
        for i in range(2, 5):
            await other.post(cid, f"missed {i}")
        await eventually(lambda: other.history(cid), lambda h: len(h) == 4, what="stored")
        await tap.sockets[-1].close(code=1001, reason="going away")
        await eventually(lambda: len(tap.hellos), lambda n: n == 2, what="the second hello")
        preview = page.locator(f".chat[data-cid='{cid}'] .preview")
        await eventually(preview.text_content, lambda t: t == "missed 4", what="list re-read")
        tap.dropping = False
        await tap.sockets[-1].close(code=1001, reason="going away")
        await eventually(lambda: len(tap.hellos), lambda n: n == 3, what="the third hello")
    assert tap.hellos[1][cid] == tap.hellos[2][cid] == 1
    texts = await eventually(
        lambda: message_texts(page),
        lambda found: len(found) == 4,
        what="the missed messages, from the catch-up",
    )
    assert texts == ["seen 1", "missed 2", "missed 3", "missed 4"]
    await context.close()


async def test_first_load_fits_the_budget(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    sizes: dict[str, int] = {}

    async def on_response(response: Any) -> None:
        if response.url.endswith((".js", ".css")):
            sizes[response.url] = int(response.headers.get("content-length", "0"))

    page.on("response", on_response)
    await page.goto(platform.gateway.url)
    await page.wait_for_selector("#username")
    files = [f for f in (REPO / "gateway" / "web").iterdir() if f.suffix in (".js", ".css")]
    await eventually(lambda: len(sizes) >= len(files), what="every module loaded")
    total = sum(sizes.values())
    assert total <= BUDGET, sizes
    headers = (await page.request.get(platform.gateway.url)).headers
    assert "script-src" not in headers["content-security-policy"]  # default-src 'self' only
    assert "'unsafe-inline'" not in headers["content-security-policy"]

    # How long a signed-in user waits for a usable chat list (printed, not asserted).
    await sign_up(page, platform.gateway.url, "e" + unique("")[-12:])
    started = time.perf_counter()
    await page.reload()
    await page.wait_for_selector("#new-chat-names")
    listed = time.perf_counter() - started
    print(
        f"web client first load: {len(sizes)} files, {total / 1024:.1f} KB compressed "
        f"(budget {BUDGET // 1024} KB); chat list usable {listed * 1000:.0f} ms after a reload"
    )
    await context.close()


async def test_a_failing_chat_list_is_said_and_read_again_without_signing_out(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """Workers away at sign-in or at a reload: the page says so, keeps the session, and
    shows the list once a read succeeds (it used to stay empty, or sign the user out)."""
    context = await browser.new_context()
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
    refused: list[str] = []

    async def unavailable(route: Any) -> None:
        if len(refused) < 3:
            refused.append(route.request.url)
            await refuse(route, 503, "5030")
        else:
            await route.continue_()

    await page.route("**/v1/chats?*", unavailable)
    await page.reload()
    await page.wait_for_selector("#status:has-text('Could not read your chats')")
    await page.wait_for_selector(f".chat[data-cid='{cid}']")
    await page.wait_for_selector("#status", state="hidden")
    assert len(refused) == 3 and await page.locator("#new-chat-names").count() == 1
    await context.close()


async def test_a_chat_left_before_its_messages_came_is_not_marked_read(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """Its page used to mark it read once it came: the detached list measures 0, which
    looks scrolled to the bottom."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, url, http, unique)
        marks: list[Any] = []  # every move of this chat's read marker the page asks for
        page.on("request", lambda r: marks.append(r) if _moves_marker(r, cid) else None)
        third_name = "q" + unique("")[-12:]
        third = await User.sign_up(http, url, third_name)
        me = User(http, url, await token_of(page))
        quiet = (await third.call("POST", "/v1/chats", json={"users": [third.id, me.id]}))["id"]
        for i in range(3):
            await other.post(cid, f"unread {i}")
        badge = page.locator(f".chat[data-cid='{cid}'] .badge")
        await eventually(badge.text_content, lambda t: t == "3", what="3 unread")
        await page.wait_for_selector(f".chat[data-cid='{quiet}']")
        held: list[Any] = []
        pattern = f"**/v1/chats/{cid}/messages?*"
        await page.route(pattern, lambda r: held.append(r))  # answered once the chat is left
        await page.click(f".chat[data-cid='{cid}']")
        await eventually(lambda: len(held), lambda n: n == 1, what="the history read sent")
        await page.click(f".chat[data-cid='{quiet}']")
        await page.wait_for_selector(f"#chat-title:has-text('{third_name}')")
        async with page.expect_response(lambda r: r.url == held[0].request.url) as answered:
            await held[0].continue_()
        await (await answered.value).finished()
        for _ in range(2):  # two round trips through the page's task queue: its load() ran
            await page.evaluate("() => new Promise((done) => setTimeout(done))")
        # A move the page sent by then reached the browser before those round trips.
        assert [r.post_data for r in marks] == []
        await page.unroute(pattern)
        await page.reload()  # the badge as the server counts it, then the server itself
        await eventually(badge.text_content, lambda t: t == "3", what="still 3 unread")
        listed = await me.call("GET", "/v1/chats")
        assert [(c["unread"], c["readSeq"]) for c in listed["data"] if c["id"] == cid] == [(3, 0)]
        assert marks == []
    await context.close()


def _moves_marker(request: Any, cid: str) -> bool:
    return bool(request.method == "PUT" and request.url.endswith(f"/v1/chats/{cid}/read"))


async def test_a_failing_history_read_offers_a_retry(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
        await other.post(cid, "there all along")
    pattern = f"**/v1/chats/{cid}/messages?*"
    await page.route(pattern, lambda route: refuse(route, 503, "5030"))
    await page.click(f".chat[data-cid='{cid}']")
    problem = page.locator("#messages .problem")
    await problem.wait_for()
    assert "Could not read this chat" in (await problem.text_content() or "")
    await page.unroute(pattern)
    await problem.locator("button").click()
    await page.wait_for_selector("#messages .message:has-text('there all along')")
    # The message may have come live already, beside the problem: the Retry's page clears it.
    await problem.wait_for(state="detached")
    await context.close()


async def test_an_ended_session_returns_to_sign_in_and_says_why(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A token refused on a REST call (expired, say) signs out with a reason instead of
    "Wrong username or password." on a message's failure."""
    context = await browser.new_context()
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
    await page.click(f".chat[data-cid='{cid}']")
    await page.wait_for_selector("#compose")
    await page.route(f"**/v1/chats/{cid}/messages", lambda r: refuse(r, 401, "4011"))
    await page.fill("#compose", "too late")
    await page.press("#compose", "Enter")
    error = page.locator("#auth-error")
    await eventually(error.text_content, lambda t: "session has ended" in (t or ""), what="why")
    assert await page.evaluate("sessionStorage.getItem('dialogue.token')") is None
    await context.close()


async def test_a_gap_in_the_open_chat_starts_it_over_from_the_newest(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """Held seqs 1..2, then a gap 3..62 (more than a page missed): the newest page alone
    would stand next to 1..2 with 3..12 missing in between and nothing to say so. The
    conversation starts over from the newest page, and scrolling up brings the rest."""
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    tap = StreamTap()
    await tap.attach(page)
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
        for i in (1, 2):
            await other.post(cid, f"m {i}")
        await page.click(f".chat[data-cid='{cid}']")
        await page.wait_for_selector("#messages .message:has-text('m 2')")
        tap.dropping = True
        for i in range(3, 63):
            await other.post(cid, f"m {i}")
        await eventually(lambda: other.history(cid), lambda h: len(h) == 62, what="stored")
        gap = {"type": "gap", "cid": cid, "fromSeq": 3, "toSeq": 62}
        tap.sockets[-1].send(json.dumps(gap))
        newest = [f"m {i}" for i in range(13, 63)]
        await eventually(lambda: message_texts(page), lambda t: t == newest, what="started over")
        every = [f"m {i}" for i in range(1, 63)]
        await eventually(
            lambda: scrolled_to_top(page), lambda t: t == every, what="the rest, paged in"
        )
    await context.close()


async def test_a_gap_over_what_the_open_chat_holds_changes_nothing(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A chat joined while the socket is open gets a gap from seq 1 before its next
    message: when the view holds those seqs already, it keeps them (the older pages the
    reader scrolled up to included) instead of starting over."""
    context = await browser.new_context(viewport=DESK)
    page = await context.new_page()
    tap = StreamTap()
    await tap.attach(page)
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
        for i in range(1, 61):
            await other.post(cid, f"m {i}")
        await eventually(lambda: other.history(cid), lambda h: len(h) == 60, what="stored")
        await page.click(f".chat[data-cid='{cid}']")
        held = [f"m {i}" for i in range(1, 61)]
        await eventually(lambda: scrolled_to_top(page), lambda t: t == held, what="all held")
        tap.sockets[-1].send(json.dumps({"type": "gap", "cid": cid, "fromSeq": 1, "toSeq": 60}))
        await other.post(cid, "m 61")
        await eventually(
            lambda: message_texts(page), lambda t: t == [*held, "m 61"], what="kept, and m 61"
        )
    await context.close()


async def _answer_lost(route: Any) -> None:
    await route.fetch()  # the gateway takes the request...
    await route.abort()  # ...and the page never hears back


async def test_a_send_whose_answer_was_lost_shows_once(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """The POST reached the gateway but its answer did not reach the page: the message
    arrives over the stream, and the failed copy goes instead of standing beside it."""
    context = await browser.new_context()
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        _, cid = await chat_with_someone(page, platform.gateway.url, http, unique)
    await page.click(f".chat[data-cid='{cid}']")
    await page.wait_for_selector("#compose")

    await page.route(f"**/v1/chats/{cid}/messages", _answer_lost)
    await page.fill("#compose", "did it go?")
    await page.press("#compose", "Enter")
    await page.wait_for_selector("#messages .message[data-seq]:has-text('did it go?')")
    await eventually(
        lambda: page.locator("#messages .message").count(), lambda n: n == 1, what="one copy"
    )
    await context.close()


async def test_a_lost_answer_settles_when_the_chat_is_opened_again(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """As above, but the answer is lost while another chat is open, so the message's
    frame finds no view of its chat: the history page read on coming back used to show
    the stored message and, beside it, the failed copy with a Retry (found in review)."""
    context = await browser.new_context()
    page = await context.new_page()
    url = platform.gateway.url
    async with aiohttp.ClientSession() as http:
        other, cid = await chat_with_someone(page, url, http, unique)
        elsewhere, title = await another_chat(page, url, http, unique)
        await page.click(f".chat[data-cid='{cid}']")
        await page.wait_for_selector("#compose")
        left = asyncio.Event()

        async def lost_answer(route: Any) -> None:
            if route.request.method != "POST":
                await route.continue_()
                return
            await left.wait()
            await _answer_lost(route)

        await page.route(f"**/v1/chats/{cid}/messages", lost_answer)
        await page.fill("#compose", "did it go?")
        await page.press("#compose", "Enter")
        await page.wait_for_selector("#messages .message.sending")
        await open_chat(page, elsewhere, title)
        left.set()
        await eventually(
            lambda: other.call("GET", f"/v1/chats/{cid}/messages"),
            lambda page_: [m["text"] for m in page_["data"]] == ["did it go?"],
            what="stored",
        )
        await page.click(f".chat[data-cid='{cid}']")
        await page.wait_for_selector("#messages .message[data-seq]:has-text('did it go?')")
        await eventually(
            lambda: page.locator("#messages .message").count(), lambda n: n == 1, what="one copy"
        )
    await context.close()


async def test_a_username_typed_twice_starts_a_chat_with_that_user(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    name = "f" + unique("")[-12:]
    async with aiohttp.ClientSession() as http:
        await User.sign_up(http, platform.gateway.url, name)
    await sign_up(page, platform.gateway.url, "g" + unique("")[-12:])
    await page.fill("#new-chat-names", f"{name}, {name.upper()}")
    await page.click(".new-chat button[type=submit]")
    await page.wait_for_selector(f"#chat-title:has-text('{name}')")
    assert await page.locator("#new-chat-error").text_content() == ""
    await context.close()


async def test_long_names_and_right_to_left_text_fit_a_phone(
    platform: Platform, browser: Browser, unique: Callable[[str], str]
) -> None:
    """A group of long names pushed a phone's page sideways, and right-to-left text was
    laid out left to right (its full stop on the wrong side; found in review)."""
    url = platform.gateway.url
    context = await browser.new_context(viewport=PHONE)
    page = await context.new_page()
    async with aiohttp.ClientSession() as http:
        await sign_up(page, url, "r" + unique("")[-12:])
        me = User(http, url, await token_of(page))
        unbroken = ["".join(ch for ch in unique(c) * 3 if ch.isalnum())[:30] for c in "uv"]
        longs = [await User.sign_up(http, url, name) for name in unbroken]
        cid = await longs[0].chat_with(me, longs[1])
        await longs[0].post(cid, "مرحبا بالعالم.")
        await page.click(f".chat[data-cid='{cid}']")
        await page.wait_for_selector("#messages .message .text:has-text('مرحبا')")
        widths = await page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        directions = await page.evaluate(
            "[...document.querySelectorAll('#messages .message .text')]"
            ".map((p) => p.matches(':dir(rtl)'))"
        )
    assert widths[0] <= widths[1]
    assert directions == [True]
    await context.close()
