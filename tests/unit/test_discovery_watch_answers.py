"""The watch against answers real Consul does not give on demand: a 404 with an index,
bodies that are not a list of entries, entries of the wrong shape, JSON of every kind.
None of them may end the watch: it keeps its last set until a readable answer comes.

A hand-written /v1/health/service/<name> on an ephemeral 127.0.0.1 port stands in for
Consul, so the answers go through py-consul's own reading of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from discovery import Instance, ServiceWatch
from platform_common.retry import Backoff
from tests.support.hostile import RAW_TOKENS, Raw, json_values, nested, write
from tests.support.waiting import eventually
from tests.unit.test_discovery_watch import check, entry


class FakeHealthEndpoint:
    """/v1/health/service/<name>: each query takes the next answer the test gives,
    waiting for it as a blocking query waits for a change; every answer carries a
    fresh X-Consul-Index."""

    def __init__(self) -> None:
        self.answers: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.given = 0
        self.asked = 0
        self.index = 0

    def give(self, body: bytes, status: int = 200) -> None:
        self.given += 1
        self.answers.put_nowait((status, body))

    async def handle(self, request: web.Request) -> web.Response:
        self.asked += 1
        status, body = await self.answers.get()
        self.index += 1
        headers = {"X-Consul-Index": str(self.index), "Content-Type": "application/json"}
        return web.Response(status=status, body=body, headers=headers)


@contextlib.asynccontextmanager
async def watching(
    backoff: Backoff | None = None,
) -> AsyncIterator[tuple[FakeHealthEndpoint, ServiceWatch]]:
    """A fake endpoint and a watch of it whose pacing and (unless given) back-off take
    milliseconds. The query still waiting when the watch stops is cancelled with its
    connection (handler_cancellation)."""
    fake = FakeHealthEndpoint()
    app = web.Application()
    app.router.add_get("/v1/health/service/{name}", fake.handle)
    async with TestServer(app, host="127.0.0.1", port=0, handler_cancellation=True) as server:
        watch = ServiceWatch(
            f"http://127.0.0.1:{server.port}",
            "dialogue",
            min_interval=0.001,
            backoff=backoff or Backoff(initial=0.001, maximum=0.01),
        )
        await watch.start()
        try:
            yield fake, watch
        finally:
            await watch.stop()


async def answered(fake: FakeHealthEndpoint, watch: ServiceWatch) -> None:
    """Wait until the watch asks again, so it has handled every answer given so far;
    fails at once if its loop ended instead."""
    task = watch._task
    assert task is not None
    await eventually(
        lambda: fake.asked > fake.given or task.done(),
        every=0.002,
        what=f"query {fake.given + 1}",
    )
    assert not task.done(), f"the watch ended: {task.exception()!r}"


def body(value: Any) -> bytes:
    """JSON text of `value`, as `write` spells it (Raw tokens, pairs as objects)."""
    return write(_empty_objects(value)).encode()


def _empty_objects(value: Any) -> Any:
    """`value` with its empty dicts as Raw("{}"): `write` takes a dict as its pairs, so
    an empty one would come out as []."""
    if isinstance(value, dict):
        return {k: _empty_objects(v) for k, v in value.items()} or Raw("{}")
    if isinstance(value, list | tuple):
        return type(value)(_empty_objects(v) for v in value)
    return value


def ids(instances: tuple[Instance, ...]) -> list[str]:
    return [i.id for i in instances]


def odd(instance_id: str, where: str, value: Any) -> dict[str, Any]:
    """A serving entry of `instance_id` with one field replaced ("Service.Port", "Checks")."""
    node = entry(instance_id, check("passing"))
    *path, last = where.split(".")
    target = node
    for key in path:
        target = target[key]
    target[last] = value
    return node


#: Entries of shapes Consul never writes, each with the field that is wrong.
BAD_ENTRIES = [
    Raw("{}"),
    odd("x1", "Service", None),
    odd("x2", "Service", ["ID", "x2"]),
    odd("x3", "Service.Port", "8100"),
    odd("x4", "Service.Port", Raw("1e400")),  # Infinity once read: int() overflows
    odd("x5", "Service.Port", Raw("NaN")),
    odd("x6", "Service.Port", 0),
    odd("x7", "Service.Port", True),
    odd("x8", "Service.Port", 8100.5),
    odd("x9", "Service.ID", 9),
    odd("x10", "Service.Address", {"ip": "10.0.0.1"}),
    odd("x11", "Service.Tags", "dialogue-worker"),
    odd("x12", "Service.Meta", [("app_id", 1)]),
    odd("x13", "Checks", None),
    odd("x14", "Checks", [{"Status": ["passing"]}]),  # unhashable where a status belongs
    odd("x15", "Checks", ["passing"]),
]


async def test_odd_answers_keep_the_last_set_and_a_later_instance_is_seen(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 404 that carries an index reads as None in py-consul: it used to kill the watch
    with a TypeError, nothing logged, and the gateway served that set for ever."""
    caplog.set_level(logging.WARNING, logger="discovery")
    not_entries = [
        (404, b"null"),
        (404, b"<html>404 page not found</html>"),
        (200, b"null"),
        (200, b'{"a": 1}'),
        (200, b"17"),
        (200, b'[1, "x", null]'),
        (200, body([entry("b", check("passing")), []])),
        (200, b"[" * 100_000 + b"]" * 100_000),  # too deep for the JSON reader
    ]
    async with watching() as (fake, watch):
        fake.give(body([entry("a", check("passing"))]))
        await watch.wait_ready(30)
        assert ids(watch.instances) == ["a"]

        for status, answer in not_entries:
            fake.give(answer, status)
            await answered(fake, watch)
            assert ids(watch.instances) == ["a"], answer[:40]
            assert watch.stale_since is not None, "a set not confirmed by Consul is stale"

        fake.give(body([entry("a", check("passing")), *BAD_ENTRIES]))
        await answered(fake, watch)
        assert ids(watch.instances) == ["a"]
        assert watch.stale_since is None, "a readable answer, its odd entries left out"

        fake.give(body([entry("a", check("passing")), entry("b", check("passing"))]))
        await eventually(lambda: ids(watch.instances) == ["a", "b"], what="b seen")

    refused = [r.getMessage() for r in caplog.records if "does not read" in r.getMessage()]
    assert any("answered None, not a list of health entries" in line for line in refused)
    assert any("answered {'a': 1}" in line for line in refused)
    assert any(r.levelno == logging.ERROR and r.exc_info for r in caplog.records), "the deep one"
    skipped = caplog.text.count("skipping malformed health entry")
    left_out = caplog.text.count("leaving out a health entry whose checks do not read")
    assert (skipped, left_out) == (len(BAD_ENTRIES) - 4, 4)


@pytest.mark.parametrize("where", ["in a query", "backing off"])
async def test_cancelling_ends_the_watch_wherever_it_waits(where: str) -> None:
    """Cancellation (what stop() does) is the one thing that ends the loop: no handler
    of a failed round takes it for a failure and goes on to back off for an hour."""
    async with watching(backoff=Backoff(initial=3600.0, maximum=3600.0)) as (fake, watch):
        if where == "in a query":
            fake.give(body([entry("a", check("passing"))]))
            await eventually(lambda: fake.asked == 2, what="the next query waiting")
        else:
            fake.give(b"null", 404)
            await eventually(lambda: watch.stale_since is not None, what="the failed round")
        task = watch._task
        assert task is not None
        task.cancel()
        await eventually(task.done, what="the watch ended")
        assert task.cancelled()


def well_formed(instance: Instance) -> bool:
    return (
        all(isinstance(text, str) and text for text in (instance.id, instance.address))
        and type(instance.port) is int
        and 0 < instance.port < 65536
        and all(isinstance(text, str) for text in (*instance.meta, *instance.meta.values()))
        and all(isinstance(tag, str) for tag in instance.tags)
    )


def listed(instance: Instance, answer: object) -> bool:
    """Whether `answer` holds an entry registering `instance` (its id and port)."""
    return isinstance(answer, list) and any(
        isinstance(node, dict)
        and isinstance(node.get("Service"), dict)
        and node["Service"].get("ID") == instance.id
        and node["Service"].get("Port") == instance.port
        for node in answer
    )


FIELDS = ["Service", "Service.ID", "Service.Address", "Service.Port", "Service.Tags"]
FIELDS += ["Service.Meta", "Node", "Checks"]


@st.composite
def entries(draw: st.DrawFn) -> dict[str, Any]:
    """A serving entry, now and then with one field replaced by any JSON value."""
    instance_id = draw(st.sampled_from(["w1", "w2", "w3"]))
    status = draw(st.sampled_from(["passing", "warning", "critical"]))
    if draw(st.booleans()):
        return entry(instance_id, check(status))
    value = draw(json_values(4) | st.sampled_from([*RAW_TOKENS, nested(3)]))
    return odd(instance_id, draw(st.sampled_from(FIELDS)), value)


@given(value=json_values() | st.lists(entries(), max_size=4))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
async def test_no_json_answer_ends_the_watch(value: Any) -> None:
    """Any JSON value as the body of a 200 answer with an index: the watch asks again,
    and its set is the one before or instances the answer registers, well formed."""
    raw = body(value)
    note(f"body {raw[:500]!r}")
    async with watching() as (fake, watch):
        fake.give(body([entry("w0", check("passing"))]))
        await watch.wait_ready(30)
        before = watch.instances
        fake.give(raw)
        await answered(fake, watch)
        served = watch.instances
    event("set changed" if served != before else "set kept")
    try:
        read = json.loads(raw)  # as py-consul reads it
    except ValueError:
        read = None
    assert all(well_formed(i) for i in served)
    assert served == before or all(listed(i, read) for i in served)
