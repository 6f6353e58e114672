"""Web client benchmark: the script time a burst of live changes costs the chat list.
Prints its figures; asserts nothing.

    .venv/bin/python -m bench.web_bench [--chats 1000] [--changes 500] [--web DIR]

Loads the web client's own modules (`gateway/web`, or `--web DIR`: the same files of
another revision, e.g. from `git archive`) in Debian's chromium through Playwright,
without a gateway: the files are served to the page by Playwright's request routing.
The page builds a chat list of `--chats` chats, then makes `--changes` changes the way
live `message` frames do (a chat's last message, its seq and unread count, then
`store.changed("chats")`), each in a task of its own, all queued at once as frames read
off one socket are, and waits for two animation frames. It prints the wall
time of the burst, the script time chromium counted (`ScriptDuration`, CDP Performance
domain) and how many times the list was built.
"""

from __future__ import annotations

import argparse
import asyncio
import mimetypes
import shutil
import sys
from pathlib import Path

from playwright.async_api import Route, async_playwright

REPO = Path(__file__).resolve().parent.parent
ORIGIN = "http://web-bench.invalid"

HARNESS = """<!doctype html><html><head><link rel="stylesheet" href="/web/style.css"></head>
<body><script type="module">
import { store } from "/web/store.js";
import { chatList } from "/web/chats.js";

window.burst = async (chats, changes) => {
  store.me = { userId: 1, username: "me" };
  for (let i = 0; i < chats; i++) {
    const cid = `c${String(i).padStart(6, "0")}`;
    store.names.set(i + 2, `user${i + 2}`);
    store.put({
      id: cid, users: [1, i + 2], createdAt: 1_700_000_000 + i, lastSeq: 0, readSeq: 0,
      unread: 0, lastMessage: null,
    });
  }
  document.body.append(chatList(() => {}));
  const list = document.getElementById("chat-list");
  let built = 0;
  new MutationObserver((records) => {
    built += records.filter((r) => r.addedNodes.length).length;
  }).observe(list, { childList: true });
  const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
  await frame();
  await frame();
  built = 0;
  const ids = [...store.chats.keys()];
  // Every change a task of its own, all queued at once: frames read off one socket.
  const channel = new MessageChannel();
  let made = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  channel.port1.onmessage = ({ data: n }) => {
    const chat = store.chats.get(ids[(n * 7919) % ids.length]);
    chat.lastSeq += 1;
    chat.unread += 1;
    const at = 1_800_000_000 + n;
    chat.lastMessage = { seq: chat.lastSeq, uid: 2, text: `message ${n}`, createdAt: at };
    store.changed("chats");
    if (++made === changes) done();
  };
  const started = performance.now();
  for (let n = 0; n < changes; n++) channel.port2.postMessage(n);
  await finished;
  await frame();
  await frame();
  const first = list.querySelector("button.chat .preview")?.textContent;
  return { ms: performance.now() - started, built, first };
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
    await route.fulfill(status=404, body="")


async def main(args: argparse.Namespace) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("web_bench needs Debian's chromium: apt-get install chromium")
    web = args.web
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            await page.route(f"{ORIGIN}/**", lambda route: serve(route, web))
            await page.goto(f"{ORIGIN}/")
            await page.wait_for_function("typeof window.burst === 'function'")
            cdp = await page.context.new_cdp_session(page)
            await cdp.send("Performance.enable")

            async def script_seconds() -> float:
                metrics = (await cdp.send("Performance.getMetrics"))["metrics"]
                return float(next(m["value"] for m in metrics if m["name"] == "ScriptDuration"))

            before = await script_seconds()
            result = await page.evaluate(
                "([c, n]) => window.burst(c, n)", [args.chats, args.changes]
            )
            script = await script_seconds() - before
        finally:
            await browser.close()
    print(f"web client: {web}")
    print(f"chat list of {args.chats} chats, {args.changes} changes, one per task")
    print(f"  burst, wall time   {result['ms']:9.0f} ms")
    print(
        f"  script time        {script * 1000:9.0f} ms (chromium's ScriptDuration, setup included)"
    )
    print(f"  list built         {result['built']:9d} times")
    print(f"  newest preview     {result['first']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=500)
    parser.add_argument("--web", default=str(REPO / "gateway" / "web"))
    arguments = parser.parse_args()
    arguments.web = Path(arguments.web).resolve()
    asyncio.run(main(arguments))
