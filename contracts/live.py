"""The live stream (`GET /v1/stream`, a WebSocket): its frames and close codes.

The client speaks first: one `hello` text frame with its token and, per chat it has
seen, the newest seq it holds. The server answers `ready`, catches each of those chats
up from history (or says `gap` when that would be too much), then pushes `message`,
`chat` and `read` frames as they happen. Every frame is a JSON object with a `type`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from contracts.api import Chat, Message
from contracts.ids import is_object_id
from contracts.records import UID_MAX, json_int

#: Seconds the client has to send `hello` after the upgrade.
HELLO_WITHIN = 5.0
#: Chats one hello may name in `since`.
SINCE_MAX = 1000
#: The largest client frame (a hello naming SINCE_MAX chats fits well within it).
CLIENT_FRAME_MAX = 64 * 1024
#: A chat further behind than this is not caught up over the socket: `gap` instead.
CATCH_UP_MAX = 500
#: Messages one catch-up sends over all its chats; chats past it get `gap` instead.
CATCH_UP_BUDGET = 2 * CATCH_UP_MAX
#: Chats one stream follows: the user's most active ones when it opened (read at hello).
FOLLOW_MAX = 10_000
#: Chats one socket follows at most: those listed at its start (FOLLOW_MAX at most) and
#: 1,000 created or joined since. Past it the socket is closed with TRY_AGAIN, and the
#: client's reconnect lists the most active again (found in review: chats others
#: created with the user grew a socket's index without bound, ~370 B each).
SESSION_CHATS_MAX = FOLLOW_MAX + 1_000


class CloseCode(IntEnum):
    """Why the server closed the socket (CLOSE_TEXT: what the client should do)."""

    GOING_AWAY = 1001
    UNSUPPORTED = 1003
    INVALID_TEXT = 1007
    TOO_BIG = 1009
    INTERNAL = 1011
    TRY_AGAIN = 1013
    BAD_HELLO = 4000
    UNAUTHORIZED = 4001
    TOKEN_EXPIRED = 4002
    HELLO_TIMEOUT = 4003
    TOO_SLOW = 4004


CLOSE_TEXT = {
    CloseCode.GOING_AWAY: "the gateway is shutting down: reconnect with `since`",
    CloseCode.UNSUPPORTED: "a binary frame: frames are JSON text",
    CloseCode.INVALID_TEXT: "a text frame that is not valid UTF-8",
    CloseCode.TOO_BIG: f"a frame over {CLIENT_FRAME_MAX} bytes",
    CloseCode.INTERNAL: "a server bug: reconnect with `since` after a pause",
    CloseCode.TRY_AGAIN: "the stream cannot be served now (events or history unavailable, "
    "no catch-up slot free, or the user or address holds as many streams as it may): "
    "reconnect with `since` after a pause",
    CloseCode.BAD_HELLO: "the first frame was not a valid hello (the reason says why)",
    CloseCode.UNAUTHORIZED: "the token is not valid: sign in again",
    CloseCode.TOKEN_EXPIRED: "the token expired (at hello, or while connected): reconnect "
    "with a fresh token and `since`",
    CloseCode.HELLO_TIMEOUT: f"no hello within {HELLO_WITHIN:g} s of the upgrade",
    CloseCode.TOO_SLOW: "the client did not read fast enough (its send queue filled, or "
    "the catch-up took over 60 s): reconnect with `since`",
}


#: A chat id as `since` names it, and the seq it holds (the published schema says what
#: `parse_hello` takes: it accepted a hello without `type`, an empty token, any key and
#: any integer; found in review).
_SinceChat = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{24}$")]
_SinceSeq = Annotated[int, Field(ge=0, le=UID_MAX)]


class Hello(BaseModel):
    """The client's first frame."""

    model_config = ConfigDict(frozen=True)

    type: Literal["hello"]
    token: str = Field(
        min_length=1, description="the JWT from sign-in (no Authorization header here)"
    )
    since: dict[_SinceChat, _SinceSeq] = Field(
        default_factory=dict,
        max_length=SINCE_MAX,
        # propertyNames: with the pattern alone, a key ending in "\n" passed Python's
        # validators (`$` lets a final newline pass), and parse_hello refused it.
        json_schema_extra={
            "additionalProperties": False,
            "propertyNames": {"minLength": 24, "maxLength": 24},
        },
        description=f"chat id -> newest seq the client holds (0: none); at most {SINCE_MAX}",
    )


class HelloProblem(ValueError):
    """A first frame that is not a hello the server can use."""


def parse_hello(text: str) -> Hello:
    """A hello from the client's first text frame, or HelloProblem saying what is wrong."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise HelloProblem("the first frame must be a JSON object") from None
    if not isinstance(value, dict) or value.get("type") != "hello":
        raise HelloProblem('the first frame must be {"type": "hello", ...}')
    token = value.get("token")
    if not isinstance(token, str) or not token:
        raise HelloProblem("hello needs a token")
    return Hello(type="hello", token=token, since=_since(value.get("since", {})))


def _since(value: object) -> dict[str, int]:
    if not isinstance(value, dict):
        raise HelloProblem("since must be an object of chat id -> seq")
    if len(value) > SINCE_MAX:
        raise HelloProblem(f"since may name at most {SINCE_MAX} chats")
    since: dict[str, int] = {}
    for cid, raw in value.items():
        seq = json_int(raw)
        if not is_object_id(cid):
            raise HelloProblem(f"since: {str(cid)[:40]!r} is not a chat id")
        if seq is None or not 0 <= seq <= UID_MAX:
            raise HelloProblem(f"since: the seq of {cid} must be an integer 0 .. 2**63-1")
        since[cid] = seq
    return since


class Ready(BaseModel):
    """The hello was accepted; catch-up frames follow, then live ones."""

    type: Literal["ready"] = "ready"
    userId: int


class MessageFrame(BaseModel):
    """A message of one of the user's chats (possibly again: deduplicate by cid + seq)."""

    type: Literal["message"] = "message"
    cid: str
    seq: int
    message: Message


class GapFrame(BaseModel):
    """Messages fromSeq..toSeq of a chat are not sent here: page them over REST."""

    type: Literal["gap"] = "gap"
    cid: str
    fromSeq: int
    toSeq: int


class ChatFrame(BaseModel):
    """A chat the user is in was created, or gained members."""

    type: Literal["chat"] = "chat"
    cid: str
    change: Literal["created", "members_added"]
    chat: Chat | None = Field(default=None, description="with change=created")
    users: list[int] = Field(default_factory=list, description="with members_added: who")
    members: list[int] = Field(default_factory=list, description="everyone after the change")


class ReadFrame(BaseModel):
    """The user's read marker of a chat moved (on this or another device)."""

    type: Literal["read"] = "read"
    cid: str
    seq: int


def frame(value: dict[str, Any]) -> str:
    """One frame's text."""
    return orjson.dumps(value).decode()


class Followed(BaseModel):
    """The chats a stream follows, as a worker lists them for the gateway at hello
    (`GET /followed?uid=`, internal): chat id -> lastSeq, most active first, at most
    FOLLOW_MAX; `more` when the user is in more chats than that. One read of the user's
    chats, where paging the chat list would read them all once per page."""

    object: Literal["followed"] = "followed"
    data: dict[str, int]
    more: bool
