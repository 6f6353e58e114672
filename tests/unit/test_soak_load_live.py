"""The soak's live clients (bench/soak/load_live.py) against a hand-written fake of
aiohttp's WebSocket client: the order checks of a connection and how the load stops."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any

import aiohttp
import orjson
import pytest

from bench.soak import load_live
from bench.soak.load_live import LiveLoad
from bench.soak.plan import Account, Chat, Plan
from tests.support.waiting import WITHIN, eventually

CID = "c" * 24


class Msg:
    def __init__(self, frame: dict[str, Any]) -> None:
        self.type = aiohttp.WSMsgType.TEXT
        self.data = orjson.dumps(frame).decode()


class FakeWs:
    """Hands out the frames put in it until the server closes it or the client does."""

    def __init__(self, hang_on_close: bool = False) -> None:
        self.frames: asyncio.Queue[Msg | None] = asyncio.Queue()
        self.hellos: list[dict[str, Any]] = []
        self.closed = False
        self.close_code: int | None = None
        self._hang = hang_on_close

    def server_sends(self, *frames: dict[str, Any]) -> None:
        for frame in frames:
            self.frames.put_nowait(Msg(frame))

    def server_closes(self, code: int) -> None:
        self.close_code = code
        self.frames.put_nowait(None)

    async def send_str(self, text: str) -> None:
        self.hellos.append(orjson.loads(text))

    async def close(self) -> None:
        if self._hang:
            self._hang = False  # the next one (at the client's own exit) goes through
            await asyncio.Event().wait()  # a close the server never answers
        self.closed = True
        self.frames.put_nowait(None)

    def __aiter__(self) -> FakeWs:
        return self

    async def __anext__(self) -> Msg:
        msg = await self.frames.get()
        if msg is None:
            self.closed = True
            raise StopAsyncIteration
        return msg


class FakeConnect:
    """`http.ws_connect(...)`: connects once `gate` is set, to `ws`."""

    def __init__(self, ws: FakeWs, gate: asyncio.Event) -> None:
        self.ws, self.gate = ws, gate
        self.entered = False

    def ws_connect(self, url: str, **_: Any) -> FakeConnect:
        return self

    async def __aenter__(self) -> FakeWs:
        self.entered = True
        await self.gate.wait()
        return self.ws

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.ws.closed:
            await self.ws.close()


def _load(connect: FakeConnect) -> LiveLoad:
    accounts = [Account(i, i + 1, f"u{i}", "pw", "token", "127.0.0.2") for i in range(2)]
    plan = Plan(
        run="r",
        api_url="http://gateway.invalid",
        kafka_bootstrap="",
        topic="",
        rates={},
        sockets=1,
        pages=1,
        in_flight=1,
        hot_share=0.0,
        seed=1,
        accounts=accounts,
        chats=[Chat(CID, [0, 1], False)],
    )
    load = LiveLoad(plan)
    load.streams.of = lambda account: connect  # type: ignore[method-assign,assignment,return-value]
    return load


async def test_a_connection_counts_frames_out_of_order_and_holes_no_gap_frame_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paged: list[str] = []

    async def rest(http: Any, method: str, url: str, token: str) -> tuple[str, Any, float]:
        paged.append(url)
        return "200", {"data": [{"seq": 5}, {"seq": 4}]}, 0.001

    monkeypatch.setattr(load_live, "call", rest)
    ws, opened = FakeWs(), asyncio.Event()
    opened.set()
    load = _load(FakeConnect(ws, opened))
    load.sessions.of = lambda account: None  # type: ignore[method-assign,assignment,return-value]
    listener = load.listeners[0]
    ws.server_sends(
        {"type": "ready", "userId": 1},
        *({"type": "message", "cid": CID, "seq": s, "message": {"text": "x"}} for s in (1, 3, 2)),
        {"type": "gap", "cid": CID, "fromSeq": 4, "toSeq": 5},  # covers 4..5: in order
        {"type": "message", "cid": CID, "seq": 6, "message": {"text": "x"}},
    )
    ws.server_closes(1001)

    assert await listener._session(asyncio.Event()) == "1001"

    assert ws.hellos[0]["since"] == {CID: 0}
    assert len(paged) == 1 and "afterSeq=3" in paged[0]
    report = listener.report({CID: 6})
    assert report["missing"] == 0 and report["gaps"] == 1
    assert report["uncovered"] == 1  # 3 right after 1
    assert report["out_of_order"] == 1  # 2 after 3
    assert len(report["order_examples"]) == 2


async def test_a_reconnect_resends_nothing_the_check_holds_against() -> None:
    first, opened = FakeWs(), asyncio.Event()
    opened.set()
    connect = FakeConnect(first, opened)
    load = _load(connect)
    listener = load.listeners[0]
    first.server_sends(
        *({"type": "message", "cid": CID, "seq": s, "message": {"text": "x"}} for s in (1, 2, 3))
    )
    first.server_closes(1011)
    await listener._session(asyncio.Event())
    connect.ws = second = FakeWs()
    # The chat list lagged: the server goes back to 2, then on.
    second.server_sends(
        *({"type": "message", "cid": CID, "seq": s, "message": {"text": "x"}} for s in (2, 3, 4))
    )
    second.server_closes(1011)
    await listener._session(asyncio.Event())

    assert second.hellos[0]["since"] == {CID: 3}
    report = listener.report({CID: 4})
    assert (report["out_of_order"], report["uncovered"], report["missing"]) == (0, 0, 0)
    assert report["duplicates"] == 2


async def test_a_client_that_connects_while_the_load_stops_closes_its_own_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """stop() closes the sockets it sees; one that opens just after is closed by its
    client, so stop() does not wait on it (only the bound would end that wait)."""
    monkeypatch.setattr(load_live, "CLOSE_WITHIN", 10 * WITHIN)
    ws = FakeWs()
    connect = FakeConnect(ws, asyncio.Event())
    load = _load(connect)
    connect.gate = load._stopping  # the connection completes once stop() has begun
    listener = load.listeners[0]
    load._tasks.append(asyncio.create_task(listener.run(load._stopping)))
    await eventually(lambda: connect.entered, what="the client connecting")

    final = await asyncio.wait_for(load.stop({}), WITHIN)

    assert ws.closed and ws.hellos == []  # closed at once: no hello sent
    assert final["clients"][0]["closes"] == {}
    assert all(task.done() for task in load._tasks)


async def test_stop_ends_even_when_a_close_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_live, "CLOSE_WITHIN", 0.05)  # the bound under test
    ws, opened = FakeWs(hang_on_close=True), asyncio.Event()
    opened.set()
    load = _load(FakeConnect(ws, opened))
    listener = load.listeners[0]
    load._tasks.append(asyncio.create_task(listener.run(load._stopping)))
    await eventually(lambda: listener.ws is ws, what="the client connected")

    await asyncio.wait_for(load.stop({}), WITHIN)

    assert all(task.done() for task in load._tasks)


async def test_push_latency_counts_the_other_members_frames_not_the_authors() -> None:
    """The author's own sockets get the frame too: they count for the order checks, not
    for push latency (delivery to the other members, as live_bench measures it)."""
    ws, opened = FakeWs(), asyncio.Event()
    opened.set()
    load = _load(FakeConnect(ws, opened))
    listener = load.listeners[0]
    own, other = listener.account.uid, listener.account.uid + 1
    sent = f"hi @{time.time()}"
    ws.server_sends(
        *(
            {"type": "message", "cid": CID, "seq": s, "message": {"uid": uid, "text": sent}}
            for s, uid in ((1, own), (2, other), (3, own))
        )
    )
    ws.server_closes(1011)
    await listener._session(asyncio.Event())

    assert load.stats.codes["push", "frame"] == 1
    assert load.stats.latency["push"].count == 1
    assert listener.report({CID: 3})["missing"] == 0
