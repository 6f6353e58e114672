"""The faust behaviour the worker's direct delivery relies on, with real processes.

DirectDeliveryConsumer (dialogue_worker/adapters/faust_app.py) awaits a delivery directly
when it cannot wait, waits for room while only a full stream buffer is in the way, and
lets faust race the delivery against a suspended flow otherwise. What must still hold:
a rebalance goes through while a worker's stream buffer is full, a worker stopped while
its fetch loop waits for room stops, and nothing is lost or stored twice.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient

from contracts.ids import new_id
from contracts.records import MessageRecord
from infra.local import LocalSettings
from infra.processes.private import private_stack
from infra.processes.worker import WorkerProcess, free_port, produce
from tests.support.waiting import NeverHappened, eventually

pytestmark = pytest.mark.faults
RECORDS = 12_000  # well past two batches in hand and a full stream buffer (4096) per worker
PERSISTED = "dialogue_worker_records_persisted_total"
NOW = 1_700_000_000


async def test_a_rebalance_and_a_stop_while_stream_buffers_are_full_lose_nothing(
    infra: LocalSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    env = {"MONGO_TIMEOUT": "1", "RETRY_BACKOFF_MAX": "0.5", "SHUTDOWN_GRACE": "2"}
    ports = {"LOCAL_MONGO_PORT": str(free_port())}
    with private_stack(tmp_path, infra.cache_dir, ["ferretdb"], ports) as private:
        first = WorkerProcess.for_test(
            infra, unique, mongo_url=private.settings.mongo_url, partitions=4, env=env
        )
        second = first.sibling(unique("worker"))
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(private.settings.mongo_url)
        try:
            await first.start().wait_ready()
            await second.start().wait_ready()
            cids = []
            async with aiohttp.ClientSession(headers=first.headers) as http:
                for _ in range(16):  # chats on every partition, so both workers get some
                    async with http.post(f"{first.base_url}/chats", json={"users": [1, 2]}) as r:
                        cids.append((await r.json())["id"])
            records = [
                MessageRecord(
                    v=1, id=new_id(), cid=cids[i % 16], uid=1, text=f"m{i}", createdAt=NOW + i
                )
                for i in range(RECORDS + 200)
            ]
            early, late = records[:200], records[200:]
            await produce(
                infra.kafka_bootstrap, first.topic, [(r.key(), r.to_bytes()) for r in early]
            )
            for worker in (first, second):  # both own partitions
                await eventually(lambda w=worker: w.metric(PERSISTED), lambda n: n > 0)

            private.kill("ferretdb")  # nothing can be written: the stream buffers fill up
            await produce(
                infra.kafka_bootstrap, first.topic, [(r.key(), r.to_bytes()) for r in late]
            )
            for worker in (first, second):  # each keeps retrying with its buffer full
                await eventually(
                    lambda w=worker: w.metric("dialogue_worker_retries_total"), lambda n: n >= 5
                )

            # A stop while the fetch loop waits for room, and so a rebalance while the
            # remaining worker's buffer is full: the second worker leaves the group, and
            # only if the first takes its partitions over can every record be stored.
            # Its exit code may be 1: the stop cancels a batch that cannot be stored while
            # MongoDB is down, and faust may report that agent as crashed. What is pinned is
            # that nothing is lost and that the worker does stop.
            assert await second.terminate() in (0, 1)
            await eventually(
                lambda: first.log_text().rsplit("partitions assigned: ", 1)[-1],
                lambda text: text.startswith("[0, 1, 2, 3]"),
                what="the first worker assigned every partition",
            )
            private.up(["ferretdb"])
            stored = mongo[first.mongo_db]["history"]
            with contextlib.suppress(NeverHappened):  # the assertion says what is missing
                await eventually(
                    lambda: stored.count_documents({}), lambda n: n >= len(records), within=180
                )
            docs = await stored.find({}, {"id": 1, "cid": 1, "seq": 1}).to_list()
            missing = Counter(r.cid for r in records if r.id not in {str(d["id"]) for d in docs})
            assert not missing and len(docs) == len(records), (len(docs), missing, first.log_file)
            assert await first.terminate() == 0
        finally:
            first.kill()
            second.kill()
            await mongo.close()
