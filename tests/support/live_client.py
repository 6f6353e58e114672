"""A test client of `GET /v1/stream`: connects, says hello, records every frame.

    client = await LiveClient.connect(http, gateway_url, token)
    await client.wait_messages(cid, 10)          # seqs 1..10 of cid seen (deduplicated)
    client.gap_free(cid)                         # no seq skipped
    await client.close()
    again = await LiveClient.connect(http, other_url, token, since=client.since())

It deduplicates `message` frames by (cid, seq) as a real client must, and keeps what it
saw across reconnects when handed the previous client (`resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any

import aiohttp
import orjson

from tests.support.waiting import eventually


class LiveClient:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        #: cid -> seqs in the order first seen (duplicates dropped), across reconnects
        self.seqs: dict[str, list[int]] = defaultdict(list)
        self.texts: dict[str, list[str]] = defaultdict(list)
        self.duplicates = 0
        self.gaps: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        http: aiohttp.ClientSession,
        url: str,
        token: str,
        since: dict[str, int] | None = None,
        *,
        previous: LiveClient | None = None,
        read: bool = True,
    ) -> LiveClient:
        """Open, send hello; with `previous`, carry on its record of what was seen."""
        ws = await http.ws_connect(f"{url}/v1/stream", heartbeat=None, autoping=True)
        client = cls(ws)
        if previous is not None:
            client.seqs, client.texts = previous.seqs, previous.texts
            client.duplicates = previous.duplicates
        hello = {"type": "hello", "token": token, "since": since or {}}
        await ws.send_str(orjson.dumps(hello).decode())
        if read:
            client.start_reading()
        return client

    def start_reading(self) -> None:
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self._record(orjson.loads(msg.data))
        self.close_code = self.ws.close_code

    def _record(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        if frame["type"] == "message":
            cid, seq = frame["cid"], frame["seq"]
            if self.seqs[cid] and seq <= self.seqs[cid][-1]:
                self.duplicates += 1
                return
            self.seqs[cid].append(seq)
            self.texts[cid].append(frame["message"]["text"])
        elif frame["type"] == "gap":
            self.gaps.append(frame)

    def since(self) -> dict[str, int]:
        """What a reconnect says: the newest seq seen per chat."""
        return {cid: seqs[-1] for cid, seqs in self.seqs.items() if seqs}

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == kind]

    def gap_free(self, cid: str, first: int = 1) -> bool:
        seqs = self.seqs[cid]
        return seqs == list(range(first, first + len(seqs)))

    async def wait_ready(self) -> dict[str, Any]:
        frames = await eventually(lambda: self.of_type("ready"), what="ready frame")
        return frames[0]

    async def wait_messages(self, cid: str, count: int, within: float = 60.0) -> list[int]:
        """Wait until `count` distinct seqs of `cid` were seen."""
        return await eventually(
            lambda: self.seqs[cid],
            lambda seqs: len(seqs) >= count,
            within=within,
            what=f"{count} messages of {cid}",
        )

    async def wait_closed(self, within: float = 30.0) -> int | None:
        await eventually(lambda: self.ws.closed, within=within, what="socket closed")
        if self._reader is not None:
            await self._reader
        return self.close_code if self.close_code is not None else self.ws.close_code

    async def close(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, ConnectionError):
            await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                await self._reader
