"""What the browser tests do to the page: sign up or in, start chats, read what it shows,
answer its requests in their place, and tap its stream."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp
from playwright.async_api import Page, Request, ViewportSize

from tests.support.api_user import User
from tests.support.faults import PASSWORD

DESK: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 375, "height": 740}
#: The read of one chat (GET /v1/chats/{cid}), not of its messages nor of the list.
ONE_CHAT = re.compile(r"/v1/chats/[0-9a-f]{24}$")


def requests_to(page: Page, method: str, ending: str) -> list[str]:
    """The URLs of the page's requests with that method whose path ends so, as they go."""
    seen: list[str] = []

    def on_request(request: Request) -> None:
        if request.method == method and request.url.split("?")[0].endswith(ending):
            seen.append(request.url)

    page.on("request", on_request)
    return seen


async def sign_up(page: Page, url: str, name: str) -> None:
    await page.goto(url)
    await page.fill("#username", name)
    await page.fill("#password", PASSWORD)
    await page.click("button[value=up]")
    await page.wait_for_selector("#new-chat-names")


async def sign_in(page: Page, name: str) -> None:
    """Sign in on the sign-in form the page shows."""
    await page.fill("#username", name)
    await page.fill("#password", PASSWORD)
    await page.click("button[value=in]")
    await page.wait_for_selector("#new-chat-names")


async def token_of(page: Page) -> dict[str, Any]:
    saved = await page.evaluate("sessionStorage.getItem('dialogue.token')")
    return json.loads(saved)  # type: ignore[no-any-return]


async def chat_with_someone(
    page: Page, url: str, http: aiohttp.ClientSession, unique: Callable[[str], str]
) -> tuple[User, str]:
    """The page's user signs up; someone else, over the API, starts a chat with them."""
    await sign_up(page, url, "c" + unique("")[-12:])
    token = await token_of(page)
    other = await User.sign_up(http, url, "d" + unique("")[-12:])
    chat = await other.call("POST", "/v1/chats", json={"users": [other.id, token["userId"]]})
    return other, chat["id"]


async def another_chat(
    page: Page, url: str, http: aiohttp.ClientSession, unique: Callable[[str], str]
) -> tuple[str, str]:
    """A second chat of the page's (signed-in) user, with a third person: its id and the
    title the page gives it, once the chat list shows it."""
    name = "q" + unique("")[-12:]
    third = await User.sign_up(http, url, name)
    me = (await token_of(page))["userId"]
    cid: str = (await third.call("POST", "/v1/chats", json={"users": [third.id, me]}))["id"]
    await page.wait_for_selector(f".chat[data-cid='{cid}']")
    return cid, name


async def open_chat(page: Page, cid: str, title: str) -> None:
    await page.click(f".chat[data-cid='{cid}']")
    await page.wait_for_selector(f"#chat-title:has-text('{title}')")


async def let_the_first_page_in(page: Page, release: asyncio.Event) -> None:
    """Let a history read held by the test (until `release`) go on, and wait until the
    page has handled its answer: the page reads the body and renders in tasks of its own,
    so one frame and one task after the response the load has ended (the live stream may
    show a message sooner, so a message alone says nothing about the load)."""
    async with page.expect_response(
        lambda r: "/messages" in r.url and r.request.method == "GET"
    ) as first_page:
        release.set()
    await (await first_page.value).finished()
    await page.evaluate("() => new Promise((r) => requestAnimationFrame(() => setTimeout(r)))")


async def message_texts(page: Page) -> list[str]:
    return await page.locator("#messages .message .text").all_text_contents()


async def scrolled_to_top(page: Page) -> list[str]:
    """Scroll the conversation to its top (which pages older messages in); its texts."""
    await page.evaluate("document.querySelector('.scroller').scrollTop = 0")
    return await message_texts(page)


async def refuse(route: Any, status: int, code: str) -> None:
    """Answer a request in the API's place with an error."""
    await route.fulfill(status=status, json={"object": "error", "code": code, "message": "no"})


class StreamTap:
    """The page's stream, routed through Playwright: every hello's `since` and token are
    recorded, message frames are dropped while `dropping`, and the sockets are at hand to
    cut or to send frames of the test's own. With `closes=False` the server's closes stay
    with Playwright: the page's socket stays open when the server ends it."""

    def __init__(self, closes: bool = True) -> None:
        self.hellos: list[dict[str, Any]] = []
        self.frames: list[str] = []  # every frame the server sent the page, as text
        self.tokens: list[str] = []
        self.sockets: list[Any] = []
        self.dropping = False
        self.closes = closes

    async def attach(self, page: Page) -> None:
        await page.route_web_socket(lambda u: u.endswith("/v1/stream"), self._route)

    async def _route(self, ws: Any) -> None:
        server = ws.connect_to_server()
        self.sockets.append(ws)

        def to_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "hello":
                self.hellos.append(frame["since"])
                self.tokens.append(frame["token"])
            server.send(message)

        def to_page(message: str | bytes) -> None:
            self.frames.append(message if isinstance(message, str) else message.decode())
            if not (self.dropping and json.loads(message).get("type") == "message"):
                ws.send(message)

        ws.on_message(to_server)
        server.on_message(to_page)
        if not self.closes:
            server.on_close(lambda code, reason: None)
