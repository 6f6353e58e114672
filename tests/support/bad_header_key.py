"""Produce records whose header key is not UTF-8, as a client that writes header keys as
bytes (sarama, franz-go) can: `python -m tests.support.bad_header_key BOOTSTRAP TOPIC` with
one `key<TAB>value` per line on stdin, each sent with the header key b"\\xff\\xfe".

aiokafka's producer only writes header keys it encodes itself, and its C record builder
takes nothing but a plain str; its pure-Python builder (AIOKAFKA_NO_EXTENSIONS=1, set by
`produce_with_bad_header_key`) calls the key's `encode`, which a str subclass can answer
with any bytes.
"""

from __future__ import annotations

import asyncio
import os
import sys

NOT_UTF8 = b"\xff\xfe"


class _BytesKey(str):
    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return NOT_UTF8


async def _send(bootstrap: str, topic: str, pairs: list[tuple[bytes, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in pairs:
            await producer.send_and_wait(topic, value, key=key, headers=[(_BytesKey("h"), b"v")])
    finally:
        await producer.stop()


async def produce_with_bad_header_key(
    bootstrap: str, topic: str, pairs: list[tuple[bytes, bytes]]
) -> None:
    """Run this module in a process of its own with aiokafka's extensions off."""
    lines = b"".join(k + b"\t" + v + b"\n" for k, v in pairs)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.bad_header_key",
        bootstrap,
        topic,
        stdin=asyncio.subprocess.PIPE,
        env={**os.environ, "AIOKAFKA_NO_EXTENSIONS": "1"},
    )
    await proc.communicate(lines)
    assert proc.returncode == 0, proc.returncode


if __name__ == "__main__":
    rows = [line.split(b"\t", 1) for line in sys.stdin.buffer.read().splitlines() if line]
    asyncio.run(_send(sys.argv[1], sys.argv[2], [(k, v) for k, v in rows]))
