"""HTTP/1.1 by hand over a TCP socket: to send what no HTTP client would (broken request
lines, trickled heads and bodies) and read exactly what the server answers."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

HOST = "127.0.0.1"


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def parse(raw: bytes) -> RawResponse | None:
    """The first response in `raw`, or None when there is none (closed without answering)."""
    while raw.startswith(b"HTTP/1.1 1"):  # interim answers (100 Continue) come first
        raw = raw.partition(b"\r\n\r\n")[2]
    if not raw:
        return None
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    return RawResponse(
        int(status_line.split()[1]), headers, body[: int(length)] if length else body
    )


async def read_to_close(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes (a reset counts as closing)."""
    chunks = []
    try:
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


async def exchange(port: int, data: bytes, within: float = 30.0) -> RawResponse | None:
    """Send `data` and read the answer until the server closes.

    No half-close: aiohttp closes a connection whose client half-closed at once.
    Well-formed requests should say `Connection: close`.
    """
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(within):
            return parse(await read_to_close(reader))
    finally:
        writer.close()


async def request(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes = b"",
    host: str = "server",
) -> RawResponse:
    """One request with these header bytes as they are (and Connection: close); its answer."""
    head = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n".encode()
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    head += f"Content-Length: {len(body)}\r\n\r\n".encode()
    answer = await exchange(port, head + body)
    assert answer is not None, "closed without an answer"
    return answer


def assert_well_answered(answer: RawResponse, caplog: pytest.LogCaptureFixture) -> None:
    """Below 500; an error is the JSON error body of its status; no ERROR logged."""
    assert answer.status < 500, (answer.status, answer.body[:300])
    if answer.status >= 400:
        assert answer.headers["content-type"].startswith("application/json"), answer
        error = answer.json()
        assert error["object"] == "error" and error["code"][:3] == str(answer.status), error
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
