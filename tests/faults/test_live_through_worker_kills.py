"""Scenario 12: a live client keeps every message while each worker is SIGKILLed in turn.

Bob holds one stream open on the gateway for the whole run; Alice posts into three chats
without pause; each worker is killed and restarted. Afterwards Bob's stream (deduplicated
by seq, as a client must) holds every stored message of each chat, in seq order, without
a gap: redelivered records publish their events again (duplicates on the wire), and a
seq the gateway never saw an event for is filled from history.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from infra.local import LocalSettings
from tests.support.api_user import User
from tests.support.faults import QUICK_REWIND, Platform, phase, report
from tests.support.live_client import LiveClient
from tests.support.waiting import hold

CHATS = 3


async def test_a_live_client_misses_nothing_while_workers_are_killed(
    infra: LocalSettings, unique: Callable[[str], str], http: aiohttp.ClientSession
) -> None:
    async with Platform.start(
        infra, unique, consul_url=infra.consul_url, worker_env=QUICK_REWIND
    ) as platform:
        url = platform.gateway.url
        alice, bob = [await User.sign_up(http, url, "k" + unique("")[-12:]) for _ in range(2)]
        chats = [await alice.chat_with(bob) for _ in range(CHATS)]
        live = await LiveClient.connect(http, url, bob.token)
        await live.wait_ready()
        posted: dict[str, list[str]] = {cid: [] for cid in chats}
        stop = asyncio.Event()

        async def post() -> None:
            i = 0
            while not stop.is_set():
                cid = chats[i % CHATS]
                await alice.post(cid, f"m{i}")
                posted[cid].append(f"m{i}")
                i += 1

        poster = asyncio.create_task(post())
        await hold(phase(1))
        for worker in platform.workers:
            worker.kill()
            await hold(phase(2))  # posts while it is dead
            await worker.start().wait_ready(90)
            await hold(phase(1))
        stop.set()
        await poster

        for cid in chats:
            await live.wait_messages(cid, len(posted[cid]), within=120)
        stored = {cid: await alice.history(cid) for cid in chats}
        await live.close()

    texts = {cid: [m["text"] for m in stored[cid]] for cid in chats}
    reordered = sum(texts[cid] != posted[cid] for cid in chats)
    report(
        f"faults 12-live-worker-sigkills: posted={sum(map(len, posted.values()))} "
        f"pushed={sum(len(s) for s in live.seqs.values())} duplicates={live.duplicates} "
        f"gaps={len(live.gaps)} chats_stored_out_of_post_order={reordered}"
    )
    for cid in chats:
        assert live.gap_free(cid), (cid, live.seqs[cid][:30])
        assert live.texts[cid] == texts[cid]  # the stream shows exactly the stored history
        assert texts[cid] == posted[cid]  # every post stored once, in the order posted
    assert live.gaps == []
