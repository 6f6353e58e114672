"""Web client benchmark: what a burst of live messages costs the chat list and an open
conversation. Prints its figures; asserts nothing.

    .venv/bin/python -m bench.web_bench [--chats 1000] [--held 500] [--changes 500] [--web DIR]

Loads the web client's own modules (`gateway/web`, or `--web DIR`: the same files of
another revision, e.g. from `git archive`) in Debian's chromium through Playwright,
without a gateway: the files are served to the page by Playwright's request routing,
and the API calls the views make meanwhile (read markers) get a plain answer.

1. The chat list: `--chats` chats, then `--changes` changes the way live `message`
   frames make them (a chat's last message, its seq and unread count, then
   `store.changed("chats")`).
2. An open conversation holding `--held` messages, then `--changes` live messages
   (`Conversation.live`).

Each change is a task of its own, all queued at once, as frames read off one socket
are; then the page waits for two animation frames. Printed per view: the wall time of
the burst, the script time chromium counted (`ScriptDuration`, CDP Performance domain;
the view's setup included) and how many times the view's list was built.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import shutil
import sys
from pathlib import Path
from typing import Any

from playwright.async_api import Route, async_playwright

REPO = Path(__file__).resolve().parent.parent
ORIGIN = "http://web-bench.invalid"

HARNESS = """<!doctype html><html><head><link rel="stylesheet" href="/web/style.css"></head>
<body><div id="announcer"></div><main id="view"></main><script type="module">
import { store } from "/web/store.js";
import { chatList } from "/web/chats.js";
import { Conversation } from "/web/conversation.js";

const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));

function chat(i) {
  return {
    id: `c${String(i).padStart(6, "0")}`, users: [1, i + 2], createdAt: 1_700_000_000 + i,
    lastSeq: 0, readSeq: 0, unread: 0, lastMessage: null,
  };
}

// Counts the builds of `list`, runs `change(n)` for n < changes, each in a task of its
// own (all queued at once), then waits for two frames.
async function burst(list, changes, change) {
  let built = 0;
  new MutationObserver((records) => {
    built += records.filter((r) => r.addedNodes.length).length;
  }).observe(list, { childList: true });
  await frame();
  await frame();
  built = 0;
  const channel = new MessageChannel();
  let made = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const errors = [];
  channel.port1.onmessage = ({ data: n }) => {
    try {
      change(n);
    } catch (e) {
      errors.push(String(e));
    } finally {
      if (++made === changes) done();
    }
  };
  const started = performance.now();
  for (let n = 0; n < changes; n++) channel.port2.postMessage(n);
  await finished;
  await frame();
  await frame();
  if (errors.length) throw new Error(`${errors.length} changes failed, first: ${errors[0]}`);
  return { ms: performance.now() - started, built };
}

window.chatListBurst = async (chats, changes) => {
  store.reset();
  store.me = { userId: 1, username: "me" };
  for (let i = 0; i < chats; i++) {
    store.names.set(i + 2, `user${i + 2}`);
    store.put(chat(i));
  }
  document.getElementById("view").replaceChildren(chatList(() => {}));
  const list = document.getElementById("chat-list");
  const ids = [...store.chats.keys()];
  const result = await burst(list, changes, (n) => {
    const c = store.chats.get(ids[(n * 7919) % ids.length]);
    c.lastSeq += 1;
    c.unread += 1;
    const at = 1_800_000_000 + n;
    c.lastMessage = { seq: c.lastSeq, uid: 2, text: `message ${n}`, createdAt: at };
    store.changed("chats");
  });
  return { ...result, shown: list.querySelector("button.chat .preview")?.textContent };
};

window.conversationBurst = async (held, changes) => {
  store.reset();
  store.me = { userId: 1, username: "me" };
  store.names.set(2, "user2");
  store.put(chat(0));
  const cid = chat(0).id;
  store.open = cid;
  const view = new Conversation(cid, () => {});
  document.getElementById("view").replaceChildren(view.node);
  const message = (seq) => ({
    id: `m${seq}`, cid, uid: 2, seq, text: `message ${seq}`, createdAt: 1_800_000_000 + seq,
  });
  view.add(Array.from({ length: held }, (_, i) => message(i + 1)));
  view.loaded = true;
  view.render();
  view.toBottom();
  const result = await burst(view.list, changes, (n) => view.live(message(held + 1 + n)));
  const texts = view.list.querySelectorAll("li.message .text");
  return { ...result, shown: texts[texts.length - 1]?.textContent };
};
</script></body></html>"""


async def serve(route: Route, web: Path) -> None:
    path = route.request.url.removeprefix(ORIGIN)
    if path.startswith("/web/"):
        file = web / path.removeprefix("/web/")
        if file.is_file():
            kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
            await route.fulfill(body=file.read_bytes(), content_type=kind)
            return
    if path == "/":
        await route.fulfill(body=HARNESS, content_type="text/html")
        return
    if path.startswith("/v1/") and path.endswith("/read"):
        marker = '{"object": "readMarker", "cid": "c000000", "seq": 0, "unread": 0}'
        await route.fulfill(body=marker, content_type="application/json")
        return
    await route.fulfill(status=404, body="")


async def main(args: argparse.Namespace) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("web_bench needs Debian's chromium: apt-get install chromium")
    web = args.web
    runs = [
        (f"chat list of {args.chats} chats", "chatListBurst", args.chats),
        (f"conversation holding {args.held} messages", "conversationBurst", args.held),
    ]
    print(f"web client: {web}; {args.changes} live changes, each a task, queued at once")
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            for title, function, size in runs:
                page = await browser.new_page()
                await page.route(f"{ORIGIN}/**", lambda route: serve(route, web))
                await page.goto(f"{ORIGIN}/")
                await page.wait_for_function(f"typeof window.{function} === 'function'")
                result, script = await _timed(page, function, size, args.changes)
                await page.close()
                print(title)
                print(f"  burst, wall time   {result['ms']:9.0f} ms")
                print(
                    f"  script time        {script * 1000:9.0f} ms (ScriptDuration, setup included)"
                )
                print(f"  list built         {result['built']:9d} times")
                print(f"  newest shown       {result['shown']}")
        finally:
            await browser.close()


async def _timed(page: Any, function: str, size: int, changes: int) -> tuple[Any, float]:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Performance.enable")

    async def script_seconds() -> float:
        metrics = (await cdp.send("Performance.getMetrics"))["metrics"]
        return float(next(m["value"] for m in metrics if m["name"] == "ScriptDuration"))

    before = await script_seconds()
    result = await page.evaluate(f"([s, n]) => window.{function}(s, n)", [size, changes])
    return result, await script_seconds() - before


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--held", type=int, default=500)
    parser.add_argument("--changes", type=int, default=500)
    parser.add_argument("--web", default=str(REPO / "gateway" / "web"))
    arguments = parser.parse_args()
    arguments.web = Path(arguments.web).resolve()
    asyncio.run(main(arguments))
