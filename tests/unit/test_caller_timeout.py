"""X-Timeout-Ms: the gateway tells a worker how long it waits, and the worker's reads give
up a little after (pymongo.timeout), over a real pymongo client whose server is not there."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from hypothesis import given
from hypothesis import strategies as st
from pymongo import AsyncMongoClient
from pymongo.errors import ExecutionTimeout, PyMongoError

from dialogue_worker.adapters.mongo import failure
from dialogue_worker.entrypoints.middleware import (
    PAST_CALLERS_TIMEOUT,
    _callers_timeout,
    edge_middleware,
)
from dialogue_worker.metrics import WorkerMetrics
from platform_common.http import TIMEOUT_HEADER, TIMEOUT_MS_MAX, caller_timeout, json_response
from tests.support.absent import MONGO_NOT_THERE

TOKEN = "test-token"
#: Seconds the worker's own MongoDB timeout (timeoutMS) allows, and at most a caller's.
OWN, CEILING = 3.0, 2.0
Client = TestClient[web.Request, web.Application]


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, None), ("1", 0.001), ("2000", 2.0), ("999999999", 999_999.999)]
)
def test_whole_milliseconds_are_taken(value: str | None, seconds: float | None) -> None:
    assert caller_timeout(value) == seconds


@pytest.mark.parametrize(
    "value", ["", "0", "-1", "+5", "1.5", " 5", "5 ", "1e3", "١٢", "1000000000", "0x10"]
)
def test_anything_else_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=TIMEOUT_HEADER):
        caller_timeout(value)


@pytest.mark.parametrize("value", ["9" * 5_000, "0" * 5_000 + "1" * 5_000])
def test_a_value_of_thousands_of_digits_is_refused_with_the_platforms_message(value: str) -> None:
    """int() of over 4,300 digits raised Python's own message, which the 4000 carried."""
    with pytest.raises(ValueError, match=rf"^{TIMEOUT_HEADER} must be whole milliseconds"):
        caller_timeout(value)
    assert caller_timeout("0" * 5_000 + "25") == 0.025


@given(st.text(max_size=12) | st.text("0123456789", min_size=4_000, max_size=6_000))
def test_any_text_is_a_timeout_in_range_or_refused(value: str) -> None:
    try:
        seconds = caller_timeout(value)
    except ValueError as exc:
        assert str(exc).startswith(TIMEOUT_HEADER)
        digits = value.lstrip("0")
        assert not (
            value.isascii()
            and value.isdigit()
            and len(digits) < 10
            and 1 <= int(digits or 0) <= TIMEOUT_MS_MAX
        )
        return
    assert seconds is not None and 0.001 <= seconds <= TIMEOUT_MS_MAX / 1000
    assert round(seconds * 1000) == int(value.lstrip("0"))


@pytest.fixture
async def worker() -> AsyncIterator[Client]:
    """The worker's edge in front of two handlers: `/read` reads from a MongoDB that is
    not there (tests/support/absent.py), so the read ends when its time does, and
    pymongo's error says how much time it had; `/spent` fails as a MongoDB operation
    whose time ran out (maxTimeMS, a socket timeout) does."""
    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        MONGO_NOT_THERE, timeoutMS=int(OWN * 1000), connect=False
    )

    async def read(request: web.Request) -> web.StreamResponse:
        try:
            await mongo.admin.command("ping")
        except PyMongoError as exc:
            raise failure(exc) from exc
        return json_response({})

    async def spent(request: web.Request) -> web.StreamResponse:
        ran_out = ExecutionTimeout("operation exceeded time limit", 50)
        raise failure(ran_out) from ran_out

    app = web.Application(middlewares=[edge_middleware(TOKEN, WorkerMetrics(), CEILING)])
    for method in ("GET", "POST"):
        app.router.add_route(method, "/read", read)
        app.router.add_route(method, "/spent", spent)
    async with TestClient(TestServer(app)) as client:
        yield client
    await mongo.close()


async def _answer(
    client: Client, method: str, waits: str | None, path: str = "/read"
) -> tuple[int, str]:
    headers = {"Authorization": f"Entrypoint {TOKEN}"}
    if waits is not None:
        headers[TIMEOUT_HEADER] = waits
    async with asyncio.timeout(30):  # a timeout not applied would wait far longer
        response = await client.request(method, path, headers=headers)
        body = await response.json()
    return response.status, f"{body['code']} {body['message']}"


def _time_given(caplog: pytest.LogCaptureFixture) -> float:
    """The seconds pymongo's server selection had, from the worker's warning."""
    [line] = [r.getMessage() for r in caplog.records if "storage unavailable" in r.getMessage()]
    found = re.search(r"Timeout: ([0-9.]+)s", line)
    assert found is not None, line
    return float(found.group(1))


@pytest.mark.parametrize(
    ("method", "waits", "budget"),
    [
        ("GET", "500", 0.5 + PAST_CALLERS_TIMEOUT),  # the caller's time and a little more
        ("GET", str(TIMEOUT_MS_MAX), CEILING),  # at most the ceiling
        ("GET", None, None),  # no header: no bound of its own, timeoutMS holds
        ("POST", "500", None),  # a write: its own timeoutMS, whatever the header
    ],
)
def test_a_read_is_given_the_callers_time_and_a_little_more_at_most_the_ceiling(
    method: str, waits: str | None, budget: float | None
) -> None:
    """The seconds the edge hands pymongo.timeout for a request (None: no such bound)."""
    headers = {} if waits is None else {TIMEOUT_HEADER: waits}
    request = make_mocked_request(method, "/read", headers=headers)
    assert _callers_timeout(request, CEILING) == budget


async def test_the_reads_budget_bounds_its_mongodb_operations(
    worker: Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The budget reaches pymongo: its server selection had at most that much left. An
    upper bound, which no slowness breaks; without the budget, the worker's own
    timeoutMS would have left it nearly OWN."""
    status, said = await _answer(worker, "GET", "500")
    # MongoDB not there is said as such, whoever's time ran out.
    assert (status, said) == (503, "5030 storage unavailable on this worker")
    assert _time_given(caplog) <= 0.5 + PAST_CALLERS_TIMEOUT


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_time_running_out_is_the_callers_timeout_only_for_a_read_that_had_one(
    worker: Client, method: str
) -> None:
    for waits in (None, "1000"):
        status, said = await _answer(worker, method, waits, "/spent")
        callers = waits is not None and method == "GET"
        assert status == 503
        assert said == (
            f"5030 no answer within the caller's {TIMEOUT_HEADER}"
            if callers
            else "5030 storage unavailable on this worker"
        )


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("waits", ["0", "soon", "1000000000"])
async def test_a_bad_timeout_is_a_4000(worker: Client, method: str, waits: str) -> None:
    status, said = await _answer(worker, method, waits)
    assert status == 400 and said.startswith(f"4000 {TIMEOUT_HEADER} must be whole")
