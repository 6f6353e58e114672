"""Scenario 11: SIGKILL the workers again and again while 4 clients post into 20 chats.

Afterwards every chat's messages have seq exactly 1..N, in the order of their records in
the chat's partition; every acknowledged message is stored once; the events topic has a
`message.created` for every (chat, seq); and every chat counts its N messages.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from pymongo import AsyncMongoClient

from contracts.events import MessageCreated, decode_event
from infra.local import LocalSettings
from tests.support.faults import QUICK_REWIND, Load, Platform, check_written, phase, report
from tests.support.waiting import NeverHappened, eventually, hold

KILLS = 3  # rounds; each kills every worker once, one after the other


async def test_seqs_stay_gap_free_and_in_partition_order_through_repeated_sigkills(
    infra: LocalSettings, unique: Callable[[str], str], http: aiohttp.ClientSession
) -> None:
    async with Platform.start(
        infra, unique, consul_url=infra.consul_url, worker_env=QUICK_REWIND
    ) as platform:
        load = await Load.prepare(platform, http, clients=4, chats=5)
        async with load.running():
            await hold(phase(1))
            for _ in range(KILLS):
                for worker in platform.workers:
                    worker.kill()
                    await hold(phase(1))  # traffic while it is dead
                    await worker.start().wait_ready(90)
        written = await check_written(platform, load)
        history = await _history(platform)
        # Each chat counts what it holds, also where a worker died between storing its
        # newest messages and counting them (the redelivery counts them).
        stored_per_chat = {cid: len(docs) for cid, docs in history.items()}
        await eventually(
            lambda: _counted(platform, stored_per_chat), what="every chat counting its messages"
        )
        chats = {cid for c in load.clients for cid in [c.cid, *c.more]}
        expected = {(cid, d["seq"]) for cid in chats for d in history[cid]}
        # A batch's events follow its insert and its chats' counts: read the topic again,
        # to its new end, until they are all there (or the bound shows what is missing).
        events: set[tuple[str, int]] = set()

        async def events_missing() -> set[tuple[str, int]]:
            nonlocal events
            events = await _events(platform, chats)
            return expected - events

        with contextlib.suppress(NeverHappened):  # the assertion below names them
            await eventually(events_missing, lambda left: not left, every=1.0)

    seqs = {cid: [d["seq"] for d in history[cid]] for cid in chats}
    offsets = {cid: [d["o"] for d in history[cid]] for cid in chats}
    stored = sum(len(s) for s in seqs.values())
    missing_events = expected - events
    report(
        f"faults 11-sequence-sigkills: kills={KILLS * len(platform.workers)} "
        f"chats={len(chats)} acked={written.acked} persisted={written.persisted} "
        f"duplicates={written.duplicates} stored={stored} events={len(events)} "
        f"missing_events={len(missing_events)} errors={dict(load.codes('post'))}"
    )
    assert load.unclear() == [] and set(load.codes("post")) <= {"202"}, load.codes("post")
    assert written.duplicates == 0, written
    for cid in chats:
        assert seqs[cid] == list(range(1, len(seqs[cid]) + 1)), (cid, seqs[cid][:20])
        assert offsets[cid] == sorted(offsets[cid]), f"chat {cid} not in partition order"
        assert len({d["p"] for d in history[cid]}) <= 1  # one owner partition per chat
    assert missing_events == set(), sorted(missing_events)[:10]
    assert written.missing == [], written


async def _history(platform: Platform) -> dict[str, list[dict[str, Any]]]:
    """Every stored message by chat, in seq order (straight from MongoDB)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(platform.mongo_url)
    try:
        docs = (
            await client[platform.workers[0].mongo_db]["history"]
            .find({}, {"cid": 1, "seq": 1, "o": 1, "p": 1})
            .to_list()
        )
    finally:
        await client.close()
    by_chat: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in sorted(docs, key=lambda d: d["seq"]):
        by_chat[str(d["cid"])].append(d)
    return by_chat


async def _counted(platform: Platform, stored: dict[str, int]) -> bool:
    """Whether each chat's document counts (`lastSeq`) the messages stored for it."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(platform.mongo_url)
    try:
        chats = (
            await client[platform.workers[0].mongo_db]["chats"].find({}, {"lastSeq": 1}).to_list()
        )
    finally:
        await client.close()
    counts = {str(c["_id"]): c.get("lastSeq", 0) for c in chats}
    return all(counts.get(cid) == n for cid, n in stored.items())


async def _events(platform: Platform, chats: set[str]) -> set[tuple[str, int]]:
    """(cid, seq) of every message.created on the workers' events topic, read to its end."""
    worker = platform.workers[0]
    topic = worker.events_topic
    consumer = AIOKafkaConsumer(
        bootstrap_servers=platform.infra.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    seen: set[tuple[str, int]] = set()
    try:
        # The worker creates the events topic with as many partitions as its own.
        partitions = [TopicPartition(topic, p) for p in range(worker.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)

        async def read() -> bool:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = decode_event(record.value or b"")
                    if isinstance(event, MessageCreated) and event.cid in chats:
                        seen.add((event.cid, event.seq))
            positions = {tp: await consumer.position(tp) for tp in ends}
            return all(positions[tp] >= end for tp, end in ends.items())

        await eventually(read, what="the events topic read to its end")
    finally:
        await consumer.stop()
    return seen
