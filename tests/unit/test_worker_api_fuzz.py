"""The worker's internal API against generated requests, in process with the in-memory
store: the bytes of the entrypoint token header, the chat list's query and cursor, and
the bodies of POST /chats, PUT /chats/{cid} and PUT /chats/{cid}/read. Whatever arrives,
the answer is below 500, an error is the platform's JSON error body whose code begins
with the status, and nothing is logged at ERROR. One worker serves every example of a
test (its clock stands still, so a cursor's age is the same in every run).
"""

from __future__ import annotations

import base64
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from contracts.errors import ErrorCode
from contracts.requests import RequestProblem
from dialogue_worker.bootstrap import faust_app
from dialogue_worker.domain.chat_list import CURSOR_MAX, ListCursor, Position
from dialogue_worker.entrypoints.http import InternalApi
from dialogue_worker.entrypoints.middleware import edge_middleware
from dialogue_worker.metrics import WorkerMetrics
from dialogue_worker.services.chats import CURSOR_AHEAD, CURSOR_TTL, ChatService
from dialogue_worker.services.health import WorkerHealth
from dialogue_worker.settings import WorkerSettings
from infra.processes.private import free_port
from platform_common.http import TIMEOUT_HEADER
from tests.support.hostile import (
    EDGE_FLOATS,
    EDGE_INTS,
    RAW_TOKENS,
    Raw,
    either,
    json_bodies,
    json_scalars,
    json_values,
    nested,
    read_seqs,
    user_id_lists,
    write,
)
from tests.support.raw_http import RawResponse, assert_well_answered, exchange, request
from tests.support.worker_fakes import MemoryOutbox, MemoryStore

TOKEN = b"entrypoint-secret"
AUTH = (b"Authorization", b"Entrypoint " + TOKEN)
#: The worker's clock, standing still.
NOW = 1_700_000_000.0
#: User 1's chats with user 2, opened a second apart before NOW; writes go to the first.
CIDS = [f"65f0c0ffee00000000000{n:03x}" for n in range(5)]
CID = CIDS[0]


@dataclass(frozen=True)
class Worker:
    port: int
    first_cursor: str  # the nextCursor of user 1's first page of two chats


def _install(app: web.Application, store: MemoryStore) -> None:
    """The internal API as the worker's bootstrap wires it, on a fixed clock."""
    metrics = WorkerMetrics()
    health = WorkerHealth(store.ping, dict, stall_after=30.0)
    app.middlewares.append(edge_middleware(TOKEN.decode(), metrics, 10.0))
    chats = ChatService(store, MemoryOutbox(), clock=lambda: NOW)
    InternalApi(chats, health, metrics, "w-1").install(app)


@pytest.fixture(scope="module")
async def worker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Worker]:
    """The API on the worker's own web server (faust's app and web driver, as
    `python -m dialogue_worker` serves it), over a store in memory; Kafka is never asked."""
    store = MemoryStore()
    for n, cid in enumerate(CIDS):
        store.add_chat(cid, {1, 2}, NOW - len(CIDS) + n)
    settings = WorkerSettings(
        dialogue_env="local",
        data_dir=tmp_path_factory.mktemp("worker"),
        worker_port=free_port(),
        kafka_bootstrap="127.0.0.1:9",  # discard: nothing here talks to Kafka
    )
    web_server = faust_app(settings).web
    _install(web_server.web_app, store)
    await web_server.start_server()
    try:
        url = f"http://127.0.0.1:{settings.worker_port}/chats"
        auth = {AUTH[0].decode(): AUTH[1].decode()}
        async with aiohttp.ClientSession() as session:
            params = {"uid": "1", "limit": "2"}
            async with session.get(url, params=params, headers=auth) as first:
                cursor = (await first.json())["nextCursor"]
                assert first.status == 200 and cursor, await first.text()
        yield Worker(settings.worker_port, cursor)
    finally:
        await web_server.stop_server()


def _query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in pairs)


# --- the entrypoint token -----------------------------------------------------------------

#: What a header value may hold that aiohttp's parser takes: tab, space, visible ASCII and
#: obs-text (0x80-0xFF, invalid UTF-8 among it). Other controls it refuses before the
#: worker's edge runs (test_a_request_the_parser_refuses_is_a_json_4000...).
_VALUE_BYTES = st.binary(max_size=30).map(
    lambda raw: bytes(byte for byte in raw if byte == 0x09 or (byte >= 0x20 and byte != 0x7F))
)
SCHEMES = st.sampled_from([b"Entrypoint ", b"Entrypoint", b"Entrypoint  ", b"entrypoint "])
SCHEMES |= st.sampled_from([b"Bearer ", b"Entrypoint\t", b" Entrypoint ", b""])
SECRETS = st.sampled_from(
    [
        TOKEN,
        TOKEN + b" ",
        TOKEN + b"\t",
        b" " + TOKEN,
        TOKEN[:-1],
        TOKEN + b"x",
        TOKEN.upper(),
        TOKEN + b"\xff",
        TOKEN.replace(b"-", b"\xc2\xad"),  # a soft hyphen, in UTF-8
        b"",
    ]
)
TOKEN_HEADERS = st.lists(
    st.tuples(SCHEMES, SECRETS | _VALUE_BYTES).map(b"".join) | _VALUE_BYTES, max_size=2
)


def _accepted(values: list[bytes]) -> bool | None:
    """Whether the worker takes these Authorization values (the first counts, its
    surrounding blanks dropped by the parser); None when there is none or it is blank."""
    if not values or not values[0].strip(b" \t"):
        return None
    scheme, _, given = values[0].strip(b" \t").partition(b" ")
    return scheme == b"Entrypoint" and given.isascii() and given.strip() == TOKEN


@given(
    values=TOKEN_HEADERS,
    target=st.sampled_from(["/ping", f"/chats?uid=1&cid={CID}", "/metrics", "/nowhere"]),
)
@settings(max_examples=500, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_only_the_entrypoint_token_opens_the_api_whatever_bytes_the_header_holds(
    worker: Worker, caplog: pytest.LogCaptureFixture, values: list[bytes], target: str
) -> None:
    """Not UTF-8, a wrong case, a look-alike, the token cut or extended: 4011; no header
    or a blank one: 4010. Only `Entrypoint <token>` passes the edge."""
    caplog.clear()
    note(f"GET {target}, Authorization {values}")
    headers = [(b"Authorization", value) for value in values]
    answer = await _send(worker, "GET", target, headers, b"")
    accepted = _accepted(values)
    event(f"accepted={accepted} answered {answer.status}")
    assert_well_answered(answer, caplog)
    if accepted:
        assert answer.status != 401, answer
        assert answer.status == 200 or target != "/ping", answer
    else:
        code = "4010" if accepted is None else "4011"
        assert (answer.status, answer.json()["code"]) == (401, code), answer


# --- the chat list ------------------------------------------------------------------------


def _cursor_of(value: Any, padded: bool = False) -> str:
    """A cursor as the worker writes one (base64url of JSON), of any JSON value."""
    text = base64.urlsafe_b64encode(write(value).encode()).decode()
    return text if padded else text.rstrip("=")


#: Numbers at their edges, and JSON tokens no library writes.
EDGE_NUMBERS = st.sampled_from([*EDGE_INTS, *EDGE_FLOATS, *RAW_TOKENS])
#: Snapshots within the listing's life (CURSOR_TTL back, CURSOR_AHEAD on) and just past.
SNAPSHOTS = st.floats(NOW - CURSOR_TTL - 5, NOW + CURSOR_AHEAD + 5) | st.sampled_from(
    [NOW, NOW - CURSOR_TTL, NOW + CURSOR_AHEAD]
)
#: Chat ids, or short texts (their JSON escapes keep the cursor within CURSOR_MAX).
POSITION_IDS = st.sampled_from(CIDS) | st.text(st.characters(codec="utf-8"), max_size=8)
#: Cursors not made from three fields: any JSON, any bytes, with the padding the worker
#: strips, longer than CURSOR_MAX, any text.
OTHER_CURSORS = (
    st.builds(_cursor_of, json_values(), st.booleans())
    | st.binary(max_size=150).map(lambda raw: base64.urlsafe_b64encode(raw).decode())
    | st.sampled_from(["", "=", "A" * (CURSOR_MAX + 1), _cursor_of([NOW, NOW, "x" * 150])])
    | st.text(max_size=40)
)


@st.composite
def cursors(draw: st.DrawFn) -> str:
    """Half the time a cursor of three fields, each a value the worker takes (a snapshot,
    a finite activity, a short id) or, one time in four, one at an edge; else any other."""
    if not draw(st.booleans()):
        return draw(OTHER_CURSORS)
    edge = st.integers(0, 3).map(lambda n: n == 0)
    snapshot = draw(EDGE_NUMBERS if draw(edge) else SNAPSHOTS)
    finite = st.floats(allow_nan=False, allow_infinity=False) | st.just(NOW - 2.5)
    activity = draw(EDGE_NUMBERS if draw(edge) else finite)
    cid = draw(json_scalars() | json_values(3) if draw(edge) else POSITION_IDS)
    return _cursor_of([snapshot, activity, cid])


UIDS = either(st.just("1"), st.sampled_from(["2", "3", "0", "-1", str(2**63), " 1", ""]))
LIMITS = either(
    st.sampled_from(["1", "2", "200", ""]), st.sampled_from(["0", "201", "1.0", "\uff11"])
)


@st.composite
def chat_list_queries(draw: st.DrawFn) -> list[tuple[str, str]]:
    """`uid`, `limit` and `cursor` (any of them absent or repeated, in any order); a
    cursor is a real one, "first", half the time."""
    pairs = [("uid", draw(UIDS))] if draw(st.integers(0, 9)) else []
    once = st.sampled_from([0, 1, 1, 1, 1, 1, 1, 1, 1, 2])  # absent, once, or repeated
    pairs += [("limit", draw(LIMITS)) for _ in range(draw(once))]
    # Cut where no longer one is different, so that the request line stays within what
    # aiohttp's parser reads (test_a_request_the_parser_refuses_is_a_json_4000...).
    given = either(st.just("first"), cursors().map(lambda cursor: cursor[: CURSOR_MAX + 50]))
    pairs += [("cursor", draw(given)) for _ in range(draw(once))]
    return list(draw(st.permutations(pairs)))


@given(query=chat_list_queries())
@settings(max_examples=800, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_any_chat_list_query_is_a_page_of_the_users_chats_or_a_4xx(
    worker: Worker, caplog: pytest.LogCaptureFixture, query: list[tuple[str, str]]
) -> None:
    caplog.clear()
    pairs = [(k, worker.first_cursor if v == "first" else v) for k, v in query]
    note(f"GET /chats?{_query(pairs)}")
    answer = await _send(worker, "GET", f"/chats?{_query(pairs)}", [AUTH], b"")
    event(f"answered {answer.status}")
    assert_well_answered(answer, caplog)
    if answer.status == 200:
        uid = int(dict(query)["uid"])
        chats = answer.json()["data"]
        assert all(uid in chat["users"] for chat in chats), chats


@given(st.text(max_size=CURSOR_MAX + 10) | cursors())
@settings(max_examples=500)
def test_a_cursor_decodes_to_finite_times_and_a_short_id_or_is_a_4005(text: str) -> None:
    try:
        cursor = ListCursor.decode(text)
    except RequestProblem as exc:
        assert exc.code is ErrorCode.BAD_PAGING
        return
    assert math.isfinite(cursor.snapshot) and math.isfinite(cursor.after.activity)
    assert isinstance(cursor.after.cid, str) and len(cursor.after.cid) <= 40


@given(
    snapshot=st.floats(allow_nan=False, allow_infinity=False),
    activity=st.floats(allow_nan=False, allow_infinity=False),
    cid=st.from_regex(r"\A[0-9a-f]{24}\Z"),
)
def test_a_cursor_the_worker_writes_reads_back_the_same(
    snapshot: float, activity: float, cid: str
) -> None:
    cursor = ListCursor(snapshot, Position(activity, cid))
    assert ListCursor.decode(cursor.encode()) == cursor


# --- bodies -------------------------------------------------------------------------------

#: The writes that read a body, and the field each reads (the caller is user 1).
WRITES = [
    ("POST", "/chats", "users"),
    ("PUT", f"/chats/{CID}?uid=1", "users"),
    ("PUT", f"/chats/{CID}/read?uid=1", "seq"),
]
FIELDS = {"users": user_id_lists([1, 2, 3]), "seq": read_seqs()}


@st.composite
def writes(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(method, target, body) of a write, the body built around the field it reads."""
    method, target, field = draw(st.sampled_from(WRITES))
    return method, target, draw(json_bodies({field: FIELDS[field]}))


@given(request=writes())
@settings(
    max_examples=400,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_any_json_body_of_a_write_is_answered_below_500_in_json(
    worker: Worker, caplog: pytest.LogCaptureFixture, request: tuple[str, str, bytes]
) -> None:
    """users and seq: big integers, 1e999, -0, NaN, lone surrogate escapes, repeated
    keys, values nested as deep as the parser goes."""
    caplog.clear()
    method, target, body = request
    note(f"{method} {target}, body {body[:500]!r}")
    answer = await _send(worker, method, target, [AUTH], body)
    event(f"{method} {target.split('?')[0].split(CID)[-1] or '{cid}'} answered {answer.status}")
    assert_well_answered(answer, caplog)


@pytest.mark.parametrize("route", [(m, t) for m, t, field in WRITES if field == "users"])
@pytest.mark.parametrize("deep", [nested(1_000), nested(1_022), nested(1_000, "object")])
async def test_a_user_id_nested_too_deep_to_quote_is_4002(
    worker: Worker, caplog: pytest.LogCaptureFixture, route: tuple[str, str], deep: Raw
) -> None:
    caplog.clear()
    method, target = route
    answer = await _send(worker, method, target, [AUTH], f'{{"users":[1,{deep.token}]}}'.encode())
    assert_well_answered(answer, caplog)
    assert answer.json()["code"] == "4002"


# --- what aiohttp's parser refuses --------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"GET /chats?cursor=" + b"A" * 8200 + b" HTTP/1.1\r\n",
        b"GET /ping HTTP/1.1\r\nX-Request-ID: a\x01b\r\n",
        b"GET /ping HTTP/1.1\r\nX-Long: " + b"x" * 8200 + b"\r\n",
        b"GET /p\xffng HTTP/1.1\r\n",
        b"POST /chats HTTP/1.1\r\nContent-Length: 2\r\nExpect: nonsense\r\n",
        b"GET /ping HTTP/1.1\r\nUpgrade: \xff\r\nConnection: upgrade\r\n",
    ],
    ids=[
        "request line too long",
        "control byte in a header",
        "header too long",
        "raw byte in the path",
        "an Expect other than 100-continue",
        "a non-ASCII header aiohttp acts on",
    ],
)
async def test_a_request_aiohttp_refuses_itself_is_a_json_4000_not_an_error_log(
    worker: Worker, caplog: pytest.LogCaptureFixture, head: bytes
) -> None:
    caplog.clear()
    request = head + b"Host: worker\r\nAuthorization: Entrypoint " + TOKEN + b"\r\n"
    answer = await exchange(worker.port, request + b"Connection: close\r\n\r\n")
    assert answer is not None, "closed without an answer"
    assert_well_answered(answer, caplog)
    assert answer.json()["code"] == "4000"


@given(
    uids=st.lists(UIDS, max_size=2),
    waits=st.none() | st.sampled_from([b"1", b"2000", b"999999999"]) | _VALUE_BYTES,
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_any_followed_query_is_the_users_chats_or_a_4xx(
    worker: Worker, caplog: pytest.LogCaptureFixture, uids: list[str], waits: bytes | None
) -> None:
    """`GET /followed` (a stream's hello), with any `uid`s and any X-Timeout-Ms bytes."""
    caplog.clear()
    headers = [AUTH] + ([] if waits is None else [(TIMEOUT_HEADER.encode(), waits)])
    answer = await _send(worker, "GET", f"/followed?{_query([('uid', u) for u in uids])}", headers)
    event(f"answered {answer.status}")
    assert_well_answered(answer, caplog)
    if answer.status == 200:
        followed = answer.json()
        # The user's chats as the chat list has them (other tests add chats to this
        # worker); the first uid of the query is the one read.
        listed = await _send(
            worker, "GET", f"/chats?{_query([('uid', uids[0]), ('limit', '200')])}", [AUTH]
        )
        assert listed.status == 200 and listed.json()["nextCursor"] is None
        mine = [chat["id"] for chat in listed.json()["data"]]
        assert list(followed["data"]) == mine and followed["more"] is False


async def _send(
    worker: Any, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> RawResponse:
    return await request(worker.port, method, target, headers, body, host="worker")
