"""Live delivery end to end (issue 14): real gateways, workers, Kafka, FerretDB, MariaDB.

Two gateways share two workers. Users connect to `GET /v1/stream` on either gateway and
see what others post through the other one; a dropped socket resumes with `since`; a
gateway killed under its clients costs them nothing once they reconnect to the other;
a client that stops reading is closed without holding up anyone else.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from infra.processes.gateway import GatewayProcess
from tests.support.api_user import User
from tests.support.faults import Platform
from tests.support.live_client import LiveClient
from tests.support.readme_client import readme_client
from tests.support.waiting import eventually

#: Small stream queues on the second gateway, so a client that stops reading fills its
#: queue after a few hundred KB (a reading client's queue holds a burst of events).
SLOW_QUEUE = {
    "STREAM_QUEUE_FRAMES": "100",
    "STREAM_QUEUE_BYTES": str(200 * 1024),
    "STREAM_SEND_BUFFER": "8192",
}
BIG_MESSAGES = 200  # of 4 KB: more than the slow client's buffers and queue hold


@pytest.fixture(scope="module")
async def second(platform: Platform) -> AsyncIterator[GatewayProcess]:
    gateway = GatewayProcess({**platform.gateway.env, **SLOW_QUEUE}).start()
    try:
        yield await gateway.wait_ready(90)
    finally:
        await gateway.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def sign_up(http: aiohttp.ClientSession, url: str, unique: Callable[[str], str]) -> User:
    return await User.sign_up(http, url, "l" + unique("")[-12:].replace("-", ""))


async def test_two_users_on_two_gateways_chat_live(
    platform: Platform,
    second: GatewayProcess,
    http: aiohttp.ClientSession,
    unique: Callable[[str], str],
) -> None:
    one, two = platform.gateway.url, second.url
    alice, bob = await sign_up(http, one, unique), await sign_up(http, two, unique)
    alice_live = await LiveClient.connect(http, one, alice.token)
    bob_live = await LiveClient.connect(http, two, bob.token)
    assert (await alice_live.wait_ready())["userId"] == alice.id
    await bob_live.wait_ready()

    cid = await alice.chat_with(bob)  # created after both connected
    created = await eventually(
        lambda: [f for f in bob_live.of_type("chat") if f["cid"] == cid], what="chat frame"
    )
    assert created[0]["change"] == "created" and bob.id in created[0]["members"]

    for i in range(5):
        await alice.post(cid, f"from alice {i}", url=one)
        await bob.post(cid, f"from bob {i}", url=two)
    await bob_live.wait_messages(cid, 10)
    await alice_live.wait_messages(cid, 10)
    for live in (alice_live, bob_live):
        assert live.gap_free(cid)
        assert [t for t in live.texts[cid] if t.startswith("from alice")] == [
            f"from alice {i}" for i in range(5)
        ]
    message = next(f for f in bob_live.of_type("message") if f["cid"] == cid)
    assert set(message["message"]) >= {"id", "cid", "uid", "createdAt", "text", "seq"}

    # Reading on one device moves the marker on the user's other devices, on either
    # gateway: a second device of Bob's on Alice's gateway shows that gateway has read
    # the event before Alice's socket is checked for it.
    bob_on_one = await LiveClient.connect(http, one, bob.token)
    await bob_on_one.wait_ready()
    await bob.call("PUT", f"/v1/chats/{cid}/read", json={"seq": 10})
    for device in (bob_live, bob_on_one):
        read = await eventually(lambda d=device: [f for f in d.of_type("read") if f["cid"] == cid])
        assert read[-1]["seq"] == 10
    assert not [f for f in alice_live.of_type("read") if f["cid"] == cid]  # bob's, not hers
    await alice_live.close()
    await bob_live.close()
    await bob_on_one.close()


async def test_a_dropped_socket_resumes_with_exactly_what_it_missed(
    platform: Platform, http: aiohttp.ClientSession, unique: Callable[[str], str]
) -> None:
    url = platform.gateway.url
    alice, bob = await sign_up(http, url, unique), await sign_up(http, url, unique)
    cid = await alice.chat_with(bob)
    live = await LiveClient.connect(http, url, bob.token)
    await live.wait_ready()
    for i in range(3):
        await alice.post(cid, f"before {i}")
    await live.wait_messages(cid, 3)
    await live.close()

    for i in range(7):  # while bob is away
        await alice.post(cid, f"away {i}")
    await eventually(lambda: alice.history(cid), lambda h: len(h) == 10, what="stored")

    resumed = await LiveClient.connect(http, url, bob.token, since=live.since())
    await resumed.wait_messages(cid, 7)
    caught_up = [f for f in resumed.of_type("message") if f["cid"] == cid]
    assert [f["seq"] for f in caught_up] == list(range(4, 11))  # exactly the missed ones
    assert [f["message"]["text"] for f in caught_up] == [f"away {i}" for i in range(7)]
    assert resumed.frames[0]["type"] == "ready"

    await alice.post(cid, "live again")
    await resumed.wait_messages(cid, 8)
    assert resumed.seqs[cid] == list(range(4, 12))
    await resumed.close()


async def test_a_gap_larger_than_the_bound_is_a_gap_frame(
    platform: Platform, http: aiohttp.ClientSession, unique: Callable[[str], str]
) -> None:
    url = platform.gateway.url
    alice, bob = await sign_up(http, url, unique), await sign_up(http, url, unique)
    cid = await alice.chat_with(bob)
    for i in range(510):
        await alice.post(cid, f"m{i}")
    await eventually(lambda: alice.history(cid), lambda h: len(h) == 510, what="stored")

    live = await LiveClient.connect(http, url, bob.token, since={cid: 2})
    gap = await eventually(lambda: live.gaps, what="gap frame")
    assert gap[0] == {"type": "gap", "cid": cid, "fromSeq": 3, "toSeq": 510}
    await alice.post(cid, "after the gap")
    await live.wait_messages(cid, 1)
    assert live.seqs[cid] == [511]
    await live.close()


async def test_clients_of_a_killed_gateway_reconnect_to_the_other_and_lose_nothing(
    platform: Platform,
    http: aiohttp.ClientSession,
    unique: Callable[[str], str],
) -> None:
    doomed = GatewayProcess(platform.gateway.env).start()
    poster: asyncio.Task[None] | None = None
    try:
        await doomed.wait_ready(90)
        survivor = platform.gateway.url
        alice, bob = await sign_up(http, survivor, unique), await sign_up(http, survivor, unique)
        cid = await alice.chat_with(bob)
        live = await LiveClient.connect(http, doomed.url, bob.token)
        await live.wait_ready()

        posted = 0

        async def keep_posting() -> None:
            nonlocal posted
            for i in range(60):
                await alice.post(cid, f"m{i}", url=survivor)
                posted += 1

        poster = asyncio.create_task(keep_posting())
        await live.wait_messages(cid, 10)
        assert doomed.proc is not None
        doomed.proc.kill()  # SIGKILL, with bob connected
        code = await live.wait_closed()
        assert code != 1000
        resumed = await LiveClient.connect(
            http, survivor, bob.token, since=live.since(), previous=live
        )
        await poster
        await resumed.wait_messages(cid, posted)
        assert resumed.gap_free(cid)
        assert resumed.texts[cid] == [f"m{i}" for i in range(60)]
        await resumed.close()
    finally:  # on failure too: the poster would post on into later tests, the process live on
        if poster is not None and not poster.done():
            poster.cancel()
            await asyncio.gather(poster, return_exceptions=True)
        await doomed.stop()


async def test_a_client_that_stops_reading_is_closed_and_delays_no_one(
    platform: Platform,
    second: GatewayProcess,
    http: aiohttp.ClientSession,
    unique: Callable[[str], str],
) -> None:
    url = second.url
    alice, bob = await sign_up(http, url, unique), await sign_up(http, url, unique)
    cid = await alice.chat_with(bob)
    fast = await LiveClient.connect(http, url, bob.token)
    slow = await LiveClient.connect(http, url, bob.token, read=False)
    await fast.wait_ready()
    transport = slow.ws._response.connection.transport  # type: ignore[union-attr]
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    transport.pause_reading()  # the slow client's process stops reading its socket

    big = "x" * 4000
    for i in range(BIG_MESSAGES):
        await alice.post(cid, f"{i} {big}")
    await fast.wait_messages(cid, BIG_MESSAGES)  # everything, while the slow one holds nothing back
    assert fast.gap_free(cid) and not fast.ws.closed
    overflows = await eventually(
        lambda: second.metric("gateway_stream_queue_overflows_total"),
        lambda n: n >= 1,
        what="the slow stream closed as too slow",
    )
    assert overflows >= 1
    transport.resume_reading()
    slow.start_reading()
    # 4004 when the close frame got through; cut (1006/None) when it did not in time
    assert await slow.wait_closed() in (4004, 1006, None)
    await fast.close()


async def test_non_members_see_nothing_of_a_chat(
    platform: Platform, http: aiohttp.ClientSession, unique: Callable[[str], str]
) -> None:
    url = platform.gateway.url
    alice, bob, eve = [await sign_up(http, url, unique) for _ in range(3)]
    watching = await LiveClient.connect(http, url, eve.token)
    await watching.wait_ready()
    private = await alice.chat_with(bob)
    for i in range(5):
        await alice.post(private, f"secret {i}")
    await eventually(lambda: alice.history(private), lambda h: len(h) == 5, what="stored")
    # Eve's own chat, created and used after: its frames arrive, the private chat's never.
    own = await eve.chat_with(alice)
    await alice.post(own, "hello eve")
    await watching.wait_messages(own, 1)
    assert all(f.get("cid") != private for f in watching.frames)
    # Added to the chat, she follows it from then on.
    await alice.call("PUT", f"/v1/chats/{private}", json={"users": [eve.id]})
    joined = await eventually(
        lambda: [f for f in watching.of_type("chat") if f["cid"] == private], what="joined"
    )
    assert joined[0]["change"] == "members_added" and eve.id in joined[0]["users"]
    await alice.post(private, "welcome eve")
    await watching.wait_messages(private, 1)
    assert watching.texts[private] == ["welcome eve"]
    await watching.close()


async def test_the_readme_client_pages_a_gap_and_loses_nothing(
    platform: Platform,
    http: aiohttp.ClientSession,
    unique: Callable[[str], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The README's client, joined to a chat that already holds messages: the `gap` it
    is sent is paged over REST, so its `since` never passes a message it did not show
    (the client printed before 2026-12-08 skipped gaps and moved `since` past them)."""
    url = platform.gateway.url
    alice, bob, carol = [await sign_up(http, url, unique) for _ in range(3)]
    cid = await alice.chat_with(carol)
    for i in range(3):
        await alice.post(cid, f"before bob {i}")
    await eventually(lambda: alice.history(cid), lambda h: len(h) == 3, what="stored")
    witness = await alice.chat_with(bob)
    since: dict[str, int] = {}
    listening = asyncio.create_task(readme_client()["listen"](url, bob.token, since))
    try:

        async def live() -> bool:  # once a message posted now reaches it, it is live
            await alice.post(witness, "are you there")
            return bool(await eventually(lambda: witness in since, within=2))

        await eventually(live, what="the client live")
        await alice.call("PUT", f"/v1/chats/{cid}", json={"users": [bob.id]})
        await eventually(lambda: since.get(cid), lambda s: s == 3, what="the gap paged")
        await alice.post(cid, "after bob")
        await eventually(lambda: since.get(cid), lambda s: s == 4, what="the live one")
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith(cid)]
    assert shown == [f"{cid} {i + 1} before bob {i}" for i in range(3)] + [f"{cid} 4 after bob"]
