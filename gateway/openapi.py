"""The gateway's OpenAPI 3.1 document, generated from contracts/api.py and the route table.

`python -m gateway.openapi` rewrites gateway/openapi.json (`--check`: exit 1 when it is
stale); the gateway serves that file at GET /v1/openapi.json. Bodies and answers are the
Pydantic models of contracts/api.py; ROUTES says, per operation, what it takes
(parameters with their bounds, the body model) and what it answers (the success model and
the error codes it may give, grouped into responses by HTTP status).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import core_schema

from contracts import api, live
from contracts.api import EXAMPLE_ID, OBJECT_ID_PATTERN
from contracts.errors import ErrorCode
from contracts.records import UID_MAX
from contracts.requests import LIMIT_DEFAULT, LIMIT_MAX
from gateway.domain.requests import IDEMPOTENCY_KEY_MAX, LOOKUP_MAX

OPENAPI_FILE = Path(__file__).resolve().with_name("openapi.json")
SCHEMAS = "#/components/schemas/"

#: What each code means, unless a route says it better (Route.notes).
ERROR_TEXT: Mapping[ErrorCode, str] = {
    ErrorCode.MALFORMED: "malformed JSON or body",
    ErrorCode.BAD_CHAT_ID: "bad chat id",
    ErrorCode.BAD_USER_ID: "bad user id",
    ErrorCode.BAD_TEXT: "empty, blank or too long message text",
    ErrorCode.TOO_FEW_USERS: "a chat needs at least 2 distinct users",
    ErrorCode.BAD_PAGING: "bad cursor or paging parameter",
    ErrorCode.NO_TOKEN: "no token",
    ErrorCode.BAD_TOKEN: "bad or expired token",
    ErrorCode.FORBIDDEN: "forbidden",
    ErrorCode.NOT_MEMBER: "not a member of the chat",
    ErrorCode.NOT_FOUND: "not found",
    ErrorCode.METHOD_NOT_ALLOWED: "method not allowed",
    ErrorCode.REQUEST_TIMEOUT: "the body did not arrive within BODY_TIMEOUT seconds",
    ErrorCode.USERNAME_TAKEN: "username taken",
    ErrorCode.CHAT_FULL: "the chat would have more members than the workers' MAX_CHAT_MEMBERS",
    ErrorCode.TOO_LARGE: "body larger than MAX_BODY_BYTES",
    ErrorCode.TOO_MANY_ATTEMPTS: "too many attempts; see Retry-After",
    ErrorCode.INTERNAL: "internal error",
    ErrorCode.NO_WORKER: "no dialogue worker available",
    ErrorCode.BUS_UNAVAILABLE: "message bus unavailable",
    ErrorCode.USER_STORE_UNAVAILABLE: "user store unavailable",
}


class Auth(StrEnum):
    """Who may call an operation; the values name the document's security schemes."""

    NONE = "none"
    USER = "bearerAuth"
    ADMIN = "adminToken"


@dataclass(frozen=True)
class Param:
    """A query, path or header parameter, documented once in components/parameters."""

    name: str
    where: Literal["query", "path", "header"]
    schema: Mapping[str, Any]
    description: str
    required: bool = False

    def openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "in": self.where}
        if self.required or self.where == "path":
            out["required"] = True
        return {**out, "schema": dict(self.schema), "description": self.description}


#: Ends a parameter's pattern where a bare `$` would not: in Python's `re` (and so in the
#: `jsonschema` library) `$` also matches before a final "\n", which passed "<value>\n"
#: that the gateway refuses; in ECMA-262 `$` is the end already and the lookahead a no-op.
_END = r"(?!\n)$"
#: An id: the pattern, and the lengths that keep a final "\n" out (as contracts/api.py's).
_ID = {"type": "string", "pattern": OBJECT_ID_PATTERN, "minLength": 24, "maxLength": 24}
#: The empty value, which a paging parameter takes for absent.
_EMPTY = {"type": "string", "maxLength": 0}
#: A message id in a query string, or empty for absent.
_ID_OR_EMPTY = {"anyOf": [_ID, _EMPTY], "examples": [EXAMPLE_ID]}
#: A seq in a query string: a decimal integer (at most 2**63 - 1), or empty for absent.
_SEQ_OR_EMPTY = {"anyOf": [{"type": "integer", "minimum": 0, "maximum": UID_MAX}, _EMPTY]}

PARAMETERS: Mapping[str, Param] = {
    p.name: p
    for p in (
        Param(
            "cid",
            "path",
            {**_ID, "examples": [EXAMPLE_ID]},
            "chat id (4001 when not 24 lowercase hex)",
        ),
        Param(
            "limit",
            "query",
            {
                "anyOf": [{"type": "integer", "minimum": 1, "maximum": LIMIT_MAX}, _EMPTY],
                "default": LIMIT_DEFAULT,
            },
            f"page size (4005 outside 1-{LIMIT_MAX}); absent or empty: {LIMIT_DEFAULT}",
        ),
        Param(
            "cursor",
            "query",
            {"type": "string", "pattern": rf"^[A-Za-z0-9_-]{{0,200}}{_END}"},
            "the previous page's nextCursor, opaque (4005 when it is not one); absent or "
            "empty: the first page. The pages of one listing show the chats as they were "
            "ordered when its first page was read, so none is skipped or repeated while "
            "chats move",
        ),
        Param(
            "beforeSeq",
            "query",
            _SEQ_OR_EMPTY,
            "messages with a lower seq than this (4005 together with another cursor); "
            "absent or empty: from the newest",
        ),
        Param(
            "afterSeq",
            "query",
            _SEQ_OR_EMPTY,
            "messages with a higher seq than this, the oldest first in the page's range "
            "(4005 together with another cursor); `afterSeq=0` starts at the first message",
        ),
        Param(
            "before",
            "query",
            _ID_OR_EMPTY,
            "messages older than this one (a message id of the chat, such as the previous "
            "page's nextCursor; 4005 when it is not, or together with `after`, also for the "
            "id of a post's 202 until the worker has stored it); absent or empty: from the "
            "newest",
        ),
        Param(
            "after",
            "query",
            _ID_OR_EMPTY,
            "messages newer than this one (a message id of the chat; 4005 when it is not, or "
            "together with `before`, also for the id of a post's 202 until the worker has "
            "stored it); absent or empty: no lower bound",
        ),
        Param(
            "Idempotency-Key",
            "header",
            {
                "type": "string",
                "minLength": 1,
                "maxLength": IDEMPOTENCY_KEY_MAX,
                "pattern": f"^[!-~]+{_END}",
            },
            f"1-{IDEMPOTENCY_KEY_MAX} visible ASCII characters (4000 otherwise). A retry with "
            "the same key (same user, chat and text) returns the same message and produces "
            "nothing new; reusing a key for another chat or text is 4000. Remembered by the "
            "gateway process that answered, for up to IDEMPOTENCY_TTL (24 h by default; less "
            "when its bounds are full).",
        ),
        Param(
            "name",
            "path",
            {
                "type": "string",
                "pattern": rf"^[a-z]+\.(js|css|html){_END}",
                "examples": ["main.js"],
            },
            "a file of the web client (404 when there is none by that name)",
        ),
        Param(
            "id",
            "query",
            {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": UID_MAX},
                "maxItems": LOOKUP_MAX,
            },
            f"a user id (repeat the parameter, at most {LOOKUP_MAX}); not with `username`",
        ),
        Param(
            "username",
            "query",
            {"type": "array", "items": {"type": "string"}, "maxItems": LOOKUP_MAX},
            f"an exact username (repeat the parameter, at most {LOOKUP_MAX}); matched as "
            "sign-in matches it (case and width folded); not with `id`",
        ),
        Param(
            "X-Request-ID",
            "header",
            {"type": "string"},
            "correlation id, echoed back and passed to the workers; a fresh one replaces it "
            "when it is absent, longer than 128 characters or not visible ASCII",
        ),
    )
}


@dataclass(frozen=True)
class Answer:
    """A success (or other non-error) response: status, what it means, its body."""

    status: int
    text: str
    model: type[BaseModel] | None = None
    #: None: a response without a body (a 101, a 204); a tuple: every type it may have.
    media_type: str | tuple[str, ...] | None = "application/json"


@dataclass(frozen=True)
class Route:
    """One operation of the document.

    `errors` lists the codes particular to the route; the generator adds what every route
    of its kind can answer: with a `body` 4000, 4080 and 4130; with `auth` 4010 and 4011
    (and 4030 for the admin token); when `limited` 4290 with Retry-After (`limited` says
    what is counted). `notes` replaces ERROR_TEXT for a code on this route.
    """

    method: Literal["get", "post", "put", "patch", "delete"]
    path: str
    operation_id: str
    summary: str
    tag: str
    answers: tuple[Answer, ...]
    auth: Auth = Auth.USER
    body: type[BaseModel] | None = None
    params: tuple[str, ...] = ()
    errors: tuple[ErrorCode, ...] = ()
    notes: Mapping[ErrorCode, str] = field(default_factory=dict)
    limited: str | None = None
    description: str | None = None
    #: A WebSocket route's frames: (what the client sends, what the server sends).
    frames: tuple[tuple[type[BaseModel], ...], tuple[type[BaseModel], ...]] = ((), ())

    def error_codes(self) -> list[ErrorCode]:
        codes = set(self.errors) | {ErrorCode.INTERNAL}  # any route, on a fault of ours
        if self.body is not None:
            codes |= {ErrorCode.MALFORMED, ErrorCode.REQUEST_TIMEOUT, ErrorCode.TOO_LARGE}
        if self.auth is not Auth.NONE:
            codes |= {ErrorCode.NO_TOKEN, ErrorCode.BAD_TOKEN}
        if self.auth is Auth.ADMIN:
            codes.add(ErrorCode.FORBIDDEN)
        if self.limited is not None:
            codes.add(ErrorCode.TOO_MANY_ATTEMPTS)
        return sorted(codes)

    def error_text(self, code: ErrorCode) -> str:
        if code in self.notes:
            return self.notes[code]
        if code is ErrorCode.TOO_MANY_ATTEMPTS and self.limited is not None:
            return f"too many {self.limited}; see Retry-After"
        return ERROR_TEXT[code]


_ADMIN_OFF = {ErrorCode.FORBIDDEN: "disabled: ADMIN_TOKEN is not set (outside local mode)"}
_NO_CHAT = {ErrorCode.NOT_FOUND: "no such chat"}

ROUTES: tuple[Route, ...] = (
    Route(
        method="post",
        path="/v1/auth/sign-up",
        operation_id="signUp",
        summary="Create a user and return a token",
        tag="auth",
        answers=(Answer(201, "user created", api.Token),),
        auth=Auth.NONE,
        body=api.SignUp,
        errors=(ErrorCode.USERNAME_TAKEN, ErrorCode.USER_STORE_UNAVAILABLE),
        notes={ErrorCode.MALFORMED: "malformed JSON, or a field out of its rules"},
        limited="sign-ups from this client address",
    ),
    Route(
        method="post",
        path="/v1/auth/sign-in",
        operation_id="signIn",
        summary="Exchange username and password for a token",
        tag="auth",
        answers=(Answer(200, "signed in", api.Token),),
        auth=Auth.NONE,
        body=api.SignIn,
        errors=(ErrorCode.BAD_TOKEN, ErrorCode.USER_STORE_UNAVAILABLE),
        notes={
            ErrorCode.MALFORMED: "malformed JSON, or a username no account can have",
            ErrorCode.BAD_TOKEN: "wrong username or password",
        },
        limited=(
            "sign-ins for this username or from this address, or too many failed sign-ins "
            "for this username, from this address or on this server"
        ),
    ),
    Route(
        method="post",
        path="/v1/auth/refresh",
        operation_id="refreshToken",
        summary="Exchange the caller's token for a new one of the same session",
        tag="auth",
        answers=(Answer(200, "a new token, with the user's current username", api.Token),),
        errors=(ErrorCode.USER_STORE_UNAVAILABLE,),
        notes={
            ErrorCode.BAD_TOKEN: "bad or expired token, a session older than "
            "SESSION_MAX_AGE (sign in again), or a user that no longer exists",
        },
        limited="token refreshes by this user",
        description="Takes no body (one sent is not read). The new token lives JWT_TTL "
        "seconds from now, or less in the last JWT_TTL of its session: a session ends "
        "SESSION_MAX_AGE seconds (7 days by default) after the sign-in or sign-up that "
        "began it, however often it is refreshed, and no token outlives it; schedule the "
        "next refresh from `expiresAt`. The old token stays valid until its own "
        "`expiresAt`.",
    ),
    Route(
        method="get",
        path="/v1/users/me",
        operation_id="me",
        summary="The caller",
        tag="users",
        answers=(Answer(200, "the caller's user", api.User),),
        errors=(ErrorCode.NOT_FOUND, ErrorCode.USER_STORE_UNAVAILABLE),
        notes={ErrorCode.NOT_FOUND: "the token's user no longer exists"},
    ),
    Route(
        method="get",
        path="/v1/users",
        operation_id="lookUpUsers",
        summary="Users by exact username, or by id: their ids and names",
        tag="users",
        answers=(Answer(200, "the users found, in the order asked for", api.UserList),),
        params=("id", "username"),
        errors=(ErrorCode.MALFORMED, ErrorCode.BAD_USER_ID, ErrorCode.USER_STORE_UNAVAILABLE),
        notes={
            ErrorCode.MALFORMED: f"neither or both of id and username, or more than "
            f"{LOOKUP_MAX} values",
        },
        limited="look-ups by this user",
        description="To start a chat by usernames, and to show the names of members. A "
        "name or id that matches no one is left out of the answer (no error), so the "
        "answer says only whether an account exists, as sign-up does; it reveals nothing "
        "about who is in which chat.",
    ),
    Route(
        method="get",
        path="/v1/chats",
        operation_id="listChats",
        summary="The caller's chats, most recent activity first",
        tag="chats",
        answers=(Answer(200, "a page of chats", api.ChatList),),
        params=("limit", "cursor"),
        errors=(ErrorCode.BAD_PAGING, ErrorCode.NO_WORKER),
        notes={
            ErrorCode.BAD_PAGING: "a bad limit, a cursor that is not a nextCursor of this "
            "list, or one whose listing began over 15 minutes ago (list again from the "
            "first page)",
        },
    ),
    Route(
        method="post",
        path="/v1/chats",
        operation_id="createChat",
        summary="Create a chat the caller is in (>= 2 distinct existing users)",
        tag="chats",
        answers=(Answer(201, "chat created", api.Chat),),
        body=api.NewChat,
        errors=(
            ErrorCode.BAD_USER_ID,
            ErrorCode.TOO_FEW_USERS,
            ErrorCode.FORBIDDEN,
            ErrorCode.NOT_FOUND,
            ErrorCode.NO_WORKER,
            ErrorCode.BUS_UNAVAILABLE,
            ErrorCode.USER_STORE_UNAVAILABLE,
        ),
        notes={
            ErrorCode.FORBIDDEN: "the caller is not among the users",
            ErrorCode.NOT_FOUND: "unknown user ids (named in the message)",
            ErrorCode.NO_WORKER: "no dialogue worker available, or one failed: the chat "
            "may or may not exist",
            ErrorCode.BUS_UNAVAILABLE: "Kafka did not take the chat's event in time: the "
            "chat was removed again (its event may still reach live sessions); retrying "
            "creates one",
        },
        limited="chats created by this user or from this address",
    ),
    Route(
        method="get",
        path="/v1/chats/{cid}",
        operation_id="getChat",
        summary="One chat of the caller",
        tag="chats",
        answers=(Answer(200, "the chat", api.Chat),),
        params=("cid",),
        errors=(
            ErrorCode.BAD_CHAT_ID,
            ErrorCode.NOT_MEMBER,
            ErrorCode.NOT_FOUND,
            ErrorCode.NO_WORKER,
        ),
        notes=_NO_CHAT,
    ),
    Route(
        method="put",
        path="/v1/chats/{cid}",
        operation_id="addChatUsers",
        summary="Add members to a chat of the caller",
        tag="chats",
        answers=(Answer(200, "the chat with the users added", api.Chat),),
        body=api.AddMembers,
        params=("cid",),
        errors=(
            ErrorCode.BAD_CHAT_ID,
            ErrorCode.BAD_USER_ID,
            ErrorCode.NOT_MEMBER,
            ErrorCode.NOT_FOUND,
            ErrorCode.CHAT_FULL,
            ErrorCode.NO_WORKER,
            ErrorCode.BUS_UNAVAILABLE,
            ErrorCode.USER_STORE_UNAVAILABLE,
        ),
        notes={
            ErrorCode.BUS_UNAVAILABLE: "the users were added but the event could not be "
            "published; retrying is safe",
            ErrorCode.MALFORMED: "malformed JSON or body, or no users to add",
            ErrorCode.NOT_FOUND: "no such chat, or unknown user ids (named in the message)",
        },
        description="Membership is checked first: a non-member always gets 4031.",
        limited="member additions by this user or from this address",
    ),
    Route(
        method="get",
        path="/v1/chats/{cid}/messages",
        operation_id="listMessages",
        summary="Messages of a chat, newest first, cursor paged",
        tag="messages",
        answers=(Answer(200, "a page of messages", api.MessageList),),
        params=("cid", "limit", "before", "after", "beforeSeq", "afterSeq"),
        errors=(
            ErrorCode.BAD_CHAT_ID,
            ErrorCode.BAD_PAGING,
            ErrorCode.NOT_MEMBER,
            ErrorCode.NOT_FOUND,
            ErrorCode.NO_WORKER,
        ),
        notes={
            ErrorCode.BAD_PAGING: "a bad limit, a cursor that is not a message of the chat "
            "or not a seq, or more than one cursor",
            **_NO_CHAT,
        },
        description="Ordered by seq (1, 2, 3 ... per chat, the order the chat's messages "
        "were stored in), newest first. At most one of `before`, `after` (message ids) and "
        "`beforeSeq`, `afterSeq` (seqs): two at once is 4005. A page costs the same at any "
        "depth of any chat.",
    ),
    Route(
        method="put",
        path="/v1/chats/{cid}/read",
        operation_id="markRead",
        summary="Move the caller's read marker forward",
        tag="chats",
        answers=(
            Answer(200, "the marker after the move, and what is left unread", api.ReadMarker),
        ),
        body=api.ReadUpTo,
        params=("cid",),
        errors=(
            ErrorCode.BAD_CHAT_ID,
            ErrorCode.NOT_MEMBER,
            ErrorCode.NOT_FOUND,
            ErrorCode.NO_WORKER,
            ErrorCode.BUS_UNAVAILABLE,
        ),
        notes={
            ErrorCode.MALFORMED: 'malformed JSON or body (it is {"seq": <integer >= 0>})',
            ErrorCode.BUS_UNAVAILABLE: "the marker moved but its event could not be "
            "published; retrying is safe",
            **_NO_CHAT,
        },
        limited="read-marker moves by this user or from this address",
        description="A marker never moves back: a lower seq changes nothing and answers "
        "the current marker. A seq past the chat's lastSeq is clamped to it. When the "
        "marker ends where the caller asked (it moved there, or stood there already: a "
        "retry), a `chat.read` event tells the caller's other devices.",
    ),
    Route(
        method="post",
        path="/v1/chats/{cid}/messages",
        operation_id="postMessage",
        summary="Post a message; accepted once Kafka acknowledged it",
        tag="messages",
        answers=(Answer(202, "accepted: durable in Kafka, readable shortly", api.Message),),
        body=api.NewMessage,
        params=("cid", "Idempotency-Key"),
        errors=(
            ErrorCode.BAD_CHAT_ID,
            ErrorCode.BAD_TEXT,
            ErrorCode.NOT_MEMBER,
            ErrorCode.NOT_FOUND,
            ErrorCode.NO_WORKER,
            ErrorCode.BUS_UNAVAILABLE,
        ),
        notes={
            ErrorCode.MALFORMED: "malformed JSON or body, a bad Idempotency-Key, or a key "
            "reused for another chat or text",
            ErrorCode.BUS_UNAVAILABLE: "Kafka did not acknowledge within KAFKA_SEND_TIMEOUT; "
            "retry with the same Idempotency-Key",
            **_NO_CHAT,
        },
        limited="messages posted by this user or from this address",
    ),
    Route(
        method="get",
        path="/v1/stream",
        operation_id="stream",
        summary="Live events over a WebSocket: messages, chat changes, read markers",
        tag="live",
        answers=(Answer(101, "switching to the WebSocket protocol", media_type=None),),
        auth=Auth.NONE,
        limited="stream opens from this address",
        notes={
            ErrorCode.MALFORMED: "a plain GET: this route only upgrades to a WebSocket",
            ErrorCode.FORBIDDEN: "an `Origin` other than the gateway's own and not listed in "
            "STREAM_ORIGINS (before the upgrade; clients that send no `Origin` are not "
            "concerned)",
        },
        errors=(ErrorCode.MALFORMED, ErrorCode.FORBIDDEN),
        frames=(
            (live.Hello,),
            (live.Ready, live.MessageFrame, live.GapFrame, live.ChatFrame, live.ReadFrame),
        ),
        description="The client's first frame is a `hello` with the token from sign-in "
        "(browsers cannot set headers on a WebSocket) and, per chat it holds, the newest "
        f"seq it has, within {live.HELLO_WITHIN:g} s. The server answers `ready`, sends the "
        "messages of those chats after their seqs (a `gap` instead when a chat is more than "
        f"{live.CATCH_UP_MAX} behind: page it with `afterSeq`), then live `message`, `chat` "
        "and `read` frames for exactly the chats the user is in, including chats created "
        "or joined later. A chat's messages arrive in seq order without gaps; the same "
        "message may arrive twice (deduplicate by cid and seq). Pings every STREAM_HEARTBEAT "
        "s; close codes in `x-websocket-close-codes`; frames in `x-websocket-frames`.",
    ),
    Route(
        method="get",
        path="/",
        operation_id="webClient",
        summary="The web client's page",
        tag="web",
        answers=(
            Answer(200, "the single-page client", media_type="text/html"),
            Answer(304, "not modified: If-None-Match named its ETag", media_type=None),
        ),
        auth=Auth.NONE,
        description="Served with an ETag (304 on If-None-Match), gzip when accepted, and a "
        "Content-Security-Policy that allows only this origin's scripts, styles and "
        "connections.",
    ),
    Route(
        method="get",
        path="/app/{name}",
        operation_id="webClientFile",
        summary="A file of the web client: a script, the style sheet or the page",
        tag="web",
        answers=(
            Answer(
                200,
                "the file, typed by its name: a JavaScript module (`.js`), CSS (`.css`) or "
                "the page (`.html`, with the page's Content-Security-Policy)",
                media_type=("text/javascript", "text/css", "text/html"),
            ),
            Answer(304, "not modified: If-None-Match named its ETag", media_type=None),
        ),
        auth=Auth.NONE,
        params=("name",),
        errors=(ErrorCode.NOT_FOUND,),
        notes={ErrorCode.NOT_FOUND: "no such file"},
    ),
    Route(
        method="get",
        path="/health",
        operation_id="health",
        summary="Liveness",
        tag="operations",
        answers=(Answer(200, "the process serves HTTP", api.Health),),
        auth=Auth.NONE,
    ),
    Route(
        method="get",
        path="/ready",
        operation_id="ready",
        summary="Readiness: Kafka producer, MySQL, at least one worker, the events feed",
        tag="operations",
        answers=(
            Answer(200, "ready", api.Readiness),
            Answer(503, "not ready; `checks` say what is missing", api.Readiness),
        ),
        auth=Auth.NONE,
    ),
    Route(
        method="get",
        path="/metrics",
        operation_id="metrics",
        summary="Prometheus metrics (admin token)",
        tag="operations",
        answers=(Answer(200, "Prometheus text exposition format", media_type="text/plain"),),
        auth=Auth.ADMIN,
        notes=_ADMIN_OFF,
    ),
    Route(
        method="get",
        path="/v1/openapi.json",
        operation_id="openapi",
        summary="This document",
        tag="operations",
        answers=(Answer(200, "OpenAPI 3.1 document"),),
        auth=Auth.NONE,
    ),
    Route(
        method="get",
        path="/v1/admin/instances",
        operation_id="adminInstances",
        summary="Worker instances the gateway's balancer knows, with per-instance request counts",
        tag="operations",
        answers=(Answer(200, "instances", api.InstanceList),),
        auth=Auth.ADMIN,
        notes=_ADMIN_OFF,
    ),
)

INFO = {
    "title": "Dialogue gateway",
    "version": "1.0.0",
    "description": (
        "Public REST API of the dialogue chat platform. Every error is a JSON body "
        '{"object":"error","code","message"}; the HTTP status is the code\'s first three '
        "digits. Unknown routes answer 4040, wrong methods 4050 (with Allow). Generated "
        "from contracts/api.py by gateway/openapi.py: run `python -m gateway.openapi`."
    ),
}
TAGS = {
    "auth": "sign-up, sign-in and token refresh",
    "users": "the caller",
    "chats": "chats and their members",
    "messages": "posting and reading messages",
    "live": "the WebSocket stream of chat events",
    "web": "the web client",
    "operations": "health, readiness, metrics and the admin view",
}


class _Schema(GenerateJsonSchema):
    """Pydantic's JSON Schema without titles (the component's name says it), and with
    every field of an answer required (answers always carry all of them)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        return self.mode == "serialization" or super().field_is_required(field, total)


def _models(routes: Iterable[Route]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Every model the routes use: bodies as they are read, answers as they are written."""
    out: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(api.Error, "serialization"): None}
    for route in routes:
        if route.body is not None:
            out[(route.body, "validation")] = None
        for answer in route.answers:
            if answer.model is not None:
                out[(answer.model, "serialization")] = None
        client, server = route.frames
        out |= dict.fromkeys([(m, "validation") for m in client], None)
        out |= dict.fromkeys([(m, "serialization") for m in server], None)
    return list(out)


def _answer(answer: Answer, refs: Mapping[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.text}
    if answer.media_type is None:
        return out
    types = (answer.media_type,) if isinstance(answer.media_type, str) else answer.media_type
    out["content"] = {}
    for media_type in types:
        if answer.model is not None:
            schema = refs[answer.model]
        else:
            schema = {"type": "object" if media_type == "application/json" else "string"}
        out["content"][media_type] = {"schema": schema}
    return out


def _errors(route: Route) -> dict[str, Any]:
    """One response per HTTP status, listing its codes (and only those, in its schema)."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in route.error_codes():
        by_status.setdefault(code.status, []).append(code)
    out: dict[str, Any] = {}
    for status, codes in by_status.items():
        schema = {
            "allOf": [{"$ref": SCHEMAS + "Error"}],
            "properties": {"code": {"enum": [code.value for code in codes]}},
        }
        response: dict[str, Any] = {
            "description": "; ".join(f"{route.error_text(code)} ({code.value})" for code in codes),
            "content": {"application/json": {"schema": schema}},
        }
        if status in (ErrorCode.TOO_MANY_ATTEMPTS.status, 503):  # 503: the middleware's "2"
            response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
        out[str(status)] = response
    return out


def _operation(route: Route, refs: Mapping[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
    }
    if route.description is not None:
        op["description"] = route.description
    op["parameters"] = [
        {"$ref": f"#/components/parameters/{name}"} for name in ("X-Request-ID", *route.params)
    ]
    if route.body is not None:
        schema = refs[route.body]
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    responses = {str(answer.status): _answer(answer, refs) for answer in route.answers}
    op["responses"] = dict(sorted({**responses, **_errors(route)}.items()))
    op["security"] = [] if route.auth is Auth.NONE else [{route.auth.value: []}]
    client, server = route.frames
    if client or server:
        op["x-websocket-frames"] = {
            "client": [refs[model] for model in client],
            "server": [refs[model] for model in server],
        }
        op["x-websocket-close-codes"] = {str(int(c)): text for c, text in live.CLOSE_TEXT.items()}
    return op


def document(routes: Iterable[Route] = ROUTES) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `routes` (by default, the gateway's)."""
    routes = tuple(routes)
    refs_by_mode, defs = models_json_schema(
        _models(routes), ref_template=SCHEMAS + "{model}", schema_generator=_Schema
    )
    refs = {
        model: dict(ref) for (model, _), ref in refs_by_mode.items() if issubclass(model, BaseModel)
    }
    schemas = {
        name: {key: value for key, value in schema.items() if key != "title"}
        for name, schema in defs.get("$defs", {}).items()
    }
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "servers": [{"url": "/", "description": "the gateway serving this document"}],
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": {name: param.openapi() for name, param in PARAMETERS.items()},
            "securitySchemes": {
                Auth.USER.value: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                Auth.ADMIN.value: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "ADMIN_TOKEN of the gateway",
                },
            },
            "headers": {
                "RetryAfter": {
                    "description": "whole seconds until the request may succeed",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1},
                }
            },
        },
    }


def render(routes: Iterable[Route] = ROUTES) -> str:
    """The document as gateway/openapi.json holds it."""
    return json.dumps(document(routes), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.openapi", description="Write gateway/openapi.json."
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when the file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        stale = not OPENAPI_FILE.exists() or OPENAPI_FILE.read_text() != text
        if stale:
            print(f"{OPENAPI_FILE} is stale; run: python -m gateway.openapi")
        return int(stale)
    OPENAPI_FILE.write_text(text)
    print(f"wrote {OPENAPI_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
