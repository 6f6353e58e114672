"""The gateway against its own OpenAPI document: schemathesis with every check, positive
and negative data, on `python -m gateway` with a real worker, MariaDB, Kafka, FerretDB
and a private Consul agent (workers always register as "dialogue": a private agent keeps
other sessions' workers out of our reads).

Each operation goes through the examples phase and the coverage and fuzzing phases in
both generation modes (positive and negative), authenticated as a real user (bearerAuth)
and as the operator (adminToken: /metrics and /v1/admin/*). Every check runs (`--checks
all`) and none is switched off, for any operation; the stateful phase has nothing to do
(the document declares no links). What is configured, each for a stated reason:

- 413 counts as a rejection of negative data and as an acceptable answer to positive
  data: the document states MAX_BODY_BYTES (4130), and any body can be made too large
  (1000 ids of 19 digits, 4096 escaped characters, extra properties), valid or not.
- Rules that JSON Schema cannot state are stated in the document in prose and as the
  error they give; `rules_hold` keeps positive cases (only those) within them.
- Test data, where validity depends on what exists (as a 404 would): half of the
  positive cases about a chat name the chat made for this run (the caller is a member),
  so answers with real chats and messages are checked too; a positive cursor is a real
  one (`before`/`after`: a stored message of that chat, `cursor`: a nextCursor of the
  list), since the gateway answers 4005 for a cursor it did not give out; a positive
  Idempotency-Key is made unique per chat and text, since reusing one for other content
  is a documented 4000.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import schemathesis
from schemathesis import AuthContext, Case, GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.hooks import HookContext

from contracts.records import json_int
from gateway.domain.usernames import refusal, sign_up_refusal
from gateway.openapi import OPENAPI_FILE, Auth
from infra.local import LocalSettings
from infra.processes.gateway import GatewayProcess, gateway_env, mysql_execute
from infra.processes.worker import WorkerProcess
from platform_common.local import LOCAL_ADMIN_TOKEN
from tests.support.waiting import eventually

#: Examples per operation in the fuzzing phase (the examples and coverage phases add
#: their own fixed sets): about 800 cases, ~20 s here on two cores.
MAX_EXAMPLES = 30
SEED = 20240501
PASSWORD = "secret-pw"
#: History cursors, of which a request may give one.
HISTORY_CURSORS = ("before", "after", "beforeSeq", "afterSeq")
#: Schemathesis' default expectations, plus 413 (see the module's docstring).
NEGATIVE_EXPECTED = ["400", "401", "403", "404", "405", "406", "409", "415", "422", "428", "429"]
POSITIVE_EXPECTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
TOO_LARGE = "413"

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "request-timeout": 10,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
        "phases": {"stateful": {"enabled": False}},  # the document declares no links
        "checks": {
            "negative_data_rejection": {"expected-statuses": [*NEGATIVE_EXPECTED, TOO_LARGE]},
            "positive_data_acceptance": {"expected-statuses": [*POSITIVE_EXPECTED, TOO_LARGE]},
        },
    }
)
#: The committed document: tests/unit checks that it is the generated and the served one.
#: Without `GET /v1/stream`: a WebSocket handshake followed by frames is not an HTTP
#: exchange schemathesis can send or judge (a plain GET is refused with 4000 by design);
#: tests/unit/test_gateway_stream.py and tests/e2e/test_live_stream.py cover it.
schema = schemathesis.openapi.from_path(OPENAPI_FILE, config=CONFIG).exclude(path="/v1/stream")


@dataclass
class Seeded:
    """What the run made before fuzzing: tokens by security scheme, and a chat."""

    tokens: dict[str, str] = field(default_factory=dict)
    chat_id: str | None = None
    #: A stored message of that chat: the `before`/`after` of positive history cases.
    message_id: str | None = None
    #: A nextCursor of the caller's chat list: the `cursor` of positive list cases.
    list_cursor: str | None = None


SEEDED = Seeded()


@schema.auth(refresh_interval=None)
class Credentials:
    """The token of the security scheme an operation asks for (none for public ones)."""

    def get(self, case: Case, context: AuthContext) -> str | None:
        needs = case.operation.definition.raw.get("security", [])
        schemes = sorted(name for need in needs for name in need)
        return next((SEEDED.tokens[name] for name in schemes if name in SEEDED.tokens), None)

    def set(self, case: Case, data: str, context: AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module")
async def worker(
    infra: LocalSettings, unique: Callable[[str], str], consul_url: str
) -> AsyncIterator[WorkerProcess]:
    process = WorkerProcess.for_test(infra, unique, consul_url=consul_url).start()
    try:
        yield await process.wait_ready(90)
    finally:
        await process.terminate()


@pytest.fixture(scope="module")
async def gateway(
    infra: LocalSettings, run_id: str, worker: WorkerProcess, consul_url: str
) -> AsyncIterator[GatewayProcess]:
    database = f"gw_openapi_{run_id}"
    await mysql_execute(infra, f"CREATE DATABASE `{database}`")
    process = GatewayProcess(gateway_env(infra, database, worker, consul_url)).start()
    try:
        yield await process.wait_ready()
    finally:
        await process.stop()
        await mysql_execute(infra, f"DROP DATABASE `{database}`")


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, token: str = "", body: Any = None
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, json=body, headers=headers) as resp:
        answer = await resp.json()
        assert resp.status in (200, 201, 202), answer
        return answer


@pytest.fixture(scope="module")
async def seeded(gateway: GatewayProcess) -> AsyncIterator[Seeded]:
    """Users 1 and 2 of a fresh database (so the documented example chat {"users": [1, 2]}
    is made for real), calling as user 1; the operator's token; two chats, the first with
    a stored message, and a nextCursor of the chat list."""
    api = gateway.url + "/v1"
    async with aiohttp.ClientSession() as http:
        sign_up = {"password": PASSWORD, "passwordConfirm": PASSWORD, "gender": "f"}
        owner = await _call(
            http, "POST", f"{api}/auth/sign-up", body={"username": "fuzz-owner", **sign_up}
        )
        other = await _call(
            http, "POST", f"{api}/auth/sign-up", body={"username": "fuzz-other", **sign_up}
        )
        assert (owner["userId"], other["userId"]) == (1, 2)
        token = str(owner["token"])
        chat = await _call(http, "POST", f"{api}/chats", token, {"users": [1, 2]})
        await _call(http, "POST", f"{api}/chats", token, {"users": [1, 2]})
        history = f"{api}/chats/{chat['id']}/messages"
        message = await _call(http, "POST", history, token, {"txt": "hi"})
        await eventually(
            lambda: _call(http, "GET", history, token),
            until=lambda page: [m["id"] for m in page["data"]] == [message["id"]],
            what="the seeded message is stored",
        )
        chats = await _call(http, "GET", f"{api}/chats?limit=1", token)
        assert chats["nextCursor"], chats
    SEEDED.tokens.update({Auth.USER.value: token, Auth.ADMIN.value: LOCAL_ADMIN_TOKEN})
    SEEDED.chat_id, SEEDED.message_id = str(chat["id"]), str(message["id"])
    SEEDED.list_cursor = str(chats["nextCursor"])
    yield SEEDED
    SEEDED.tokens.clear()
    SEEDED.chat_id = SEEDED.message_id = SEEDED.list_cursor = None


def _operation(case: Case) -> str:
    return str(case.operation.definition.raw.get("operationId"))


def _positive(case: Case, where: ParameterLocation) -> bool:
    return case.meta is not None and not case.meta.is_negative_at(where)


def rules_hold(context: HookContext, case: Case) -> bool:
    """Whether a positive case keeps the rules the document states only in prose.

    JSON Schema cannot say that a username is in one writing system (and the rest of
    the username rules), that `before` and `after` exclude each other, that a look-up
    names users by `id` or by `username` (exactly one of the two), that a chat's users
    are 2 *distinct* ids, or that an integral number written with a fraction or an
    exponent is an id (or a read marker's seq) only below 2**53: its "integer" includes
    7.0, which the gateway takes as 7 (contracts.records.json_int), but a float from
    2**53 on is not exact and is refused (4002; 4000 for a seq).
    """
    operation = _operation(case)
    body = case.body if isinstance(case.body, dict) else {}
    if operation in ("signUp", "signIn") and _positive(case, ParameterLocation.BODY):
        name = body.get("username")
        rules = sign_up_refusal if operation == "signUp" else refusal
        return not isinstance(name, str) or rules(name) is None
    if operation in ("createChat", "addChatUsers") and _positive(case, ParameterLocation.BODY):
        users = body.get("users")
        if isinstance(users, list):
            uids = [json_int(uid) for uid in users]
            enough = operation == "addChatUsers" or len(set(uids)) >= 2
            return enough and None not in uids
    if operation == "markRead" and _positive(case, ParameterLocation.BODY):
        return json_int(body.get("seq")) is not None  # the same rule for a seq
    if operation == "lookUpUsers" and _positive(case, ParameterLocation.QUERY):
        query = case.query or {}
        return bool(query.get("id")) != bool(query.get("username"))
    if operation == "listMessages" and _positive(case, ParameterLocation.QUERY):
        query = case.query or {}
        # given: any value but an empty one (0 is a seq, and falsy)
        return sum(1 for name in HISTORY_CURSORS if query.get(name) not in (None, "")) <= 1
    return True


def with_test_data(context: HookContext, case: Case) -> Case:
    """A positive sign-up confirms its password (JSON Schema cannot say "equal to"); the
    rest is test data, as the module's docstring says: the seeded chat for half of the
    positive chat ids, real cursors for positive cursors, unique Idempotency-Keys."""
    body = case.body
    if _operation(case) == "signUp" and _positive(case, ParameterLocation.BODY):
        if isinstance(body, dict) and "password" in body:
            body["passwordConfirm"] = body["password"]
    cid = (case.path_parameters or {}).get("cid")
    if isinstance(cid, str) and SEEDED.chat_id is not None:
        if _positive(case, ParameterLocation.PATH) and cid[-1:] in "02468ace":
            case.path_parameters = {**(case.path_parameters or {}), "cid": SEEDED.chat_id}
    if case.query and _positive(case, ParameterLocation.QUERY):
        known = {"cursor": SEEDED.list_cursor, "before": SEEDED.message_id}
        known["after"] = SEEDED.message_id
        case.query = {
            name: (known.get(name) or value) if value else value
            for name, value in case.query.items()
        }
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and _positive(case, ParameterLocation.HEADER):
        content = f"{case.path_parameters}{body}".encode()
        digest = hashlib.sha256(content).hexdigest()[:16]
        case.headers = {**(case.headers or {}), "Idempotency-Key": f"{key[:200]}.{digest}"}
    return case


schema.hook("filter_case")(rules_hold)
schema.hook("map_case")(with_test_data)


@pytest.fixture(scope="module")
def tally() -> Iterator[Counter[tuple[str, str]]]:
    """Cases sent, by phase and generation mode (printed at the end with -s)."""
    counts: Counter[tuple[str, str]] = Counter()
    yield counts
    for (phase, mode), n in sorted(counts.items()):
        print(f"schemathesis {phase:9} {mode:8} {n:5} cases")


@schema.parametrize()
def test_gateway_agrees_with_its_openapi_document(
    case: Case, gateway: GatewayProcess, seeded: Seeded, tally: Counter[tuple[str, str]]
) -> None:
    meta = case.meta
    mode = GenerationMode.POSITIVE if meta is None else meta.generation.mode
    tally[("?" if meta is None else meta.phase.name.value, mode.value)] += 1
    case.call_and_validate(base_url=gateway.url)
