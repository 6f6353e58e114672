"""JSON shapes of the public API, also returned by the worker's internal API.

`gateway/openapi.py` generates the OpenAPI document from these models, so each field's
description, bounds and examples here are what clients read. The request bodies describe
the wire form only: the gateway validates requests with its own rules
(`gateway/domain/`, `contracts/requests.py`), and the schemathesis test checks that the
two agree. Answer models (Chat, Message, Page) are also what gateway and worker exchange.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.errors import ErrorCode
from contracts.records import INT64_MAX, TEXT_MAX, TEXT_PATTERN, UID_MAX
from contracts.requests import MAX_USERS, MIN_CHAT_USERS

T = TypeVar("T")

#: The wire form of a chat or message id (an ObjectId).
OBJECT_ID_PATTERN = r"^[0-9a-f]{24}$"
EXAMPLE_ID = "65f0c0ffee0123456789abcd"
USERNAME_MIN, USERNAME_MAX = 5, 30
PASSWORD_MIN, PASSWORD_MAX = 6, 64
#: Longest password sign-in reads (longer ones cannot exist and are refused with 4000).
SIGN_IN_PASSWORD_MAX = 256
TEXT_WIRE_PATTERN = TEXT_PATTERN


def _id_field(description: str) -> Any:
    """An id of the wire form, documented and validated (`decode_event` read an event's
    chat and message ids as any string, while the published schema requires the form)."""
    return Field(
        description=description,
        pattern=OBJECT_ID_PATTERN,
        min_length=24,  # with the pattern: Python's `re` lets `$` pass a final "\n"
        max_length=24,
        examples=[EXAMPLE_ID],
    )


UserId = Annotated[int, Field(ge=1, le=UID_MAX, description="a user id")]
UnixSeconds = Annotated[int, Field(description="unix time in seconds", examples=[1714560000])]
Username = Annotated[
    str,
    Field(
        min_length=USERNAME_MIN,
        max_length=USERNAME_MAX,
        description=(
            f"{USERNAME_MIN}-{USERNAME_MAX} characters, as typed and once normalised (NFKC, "
            "case-folded); no leading or trailing spaces, no control, format or invisible "
            "characters, and one writing system (not Latin mixed with Cyrillic, say). Unique "
            "in its normalised form. Sign-up also refuses two spaces in a row and symbols "
            "drawn blank (U+2800 braille blank, the Hangul fillers), which accounts made "
            "before that rule may still have. A name that breaks these rules is 4000."
        ),
        examples=["alice"],
    ),
]


# --- request bodies --------------------------------------------------------------------


class SignUp(BaseModel):
    """Body of POST /v1/auth/sign-up."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "username": "alice",
                    "password": "secret-pw",
                    "passwordConfirm": "secret-pw",
                    "gender": "f",
                }
            ]
        }
    )

    username: Username
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
    passwordConfirm: str = Field(
        min_length=PASSWORD_MIN,
        max_length=PASSWORD_MAX,
        description="must equal password (4000 otherwise)",
    )
    gender: Literal["m", "f"]


class SignIn(BaseModel):
    """Body of POST /v1/auth/sign-in; other fields are ignored."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"username": "alice", "password": "secret-pw"}]},
    )

    username: Username = Field(
        description=(
            f"a name no account can have (not {USERNAME_MIN}-{USERNAME_MAX} characters as "
            "typed and once normalised; a leading or trailing space; a character of Unicode "
            "category C or Z other than U+0020, or a default-ignorable one; mixed writing "
            "systems) is 4000, without a look-up. A name only sign-up refuses (two spaces in a "
            "row, a blank symbol these rules let through) is looked up: 4011 when no account "
            "has it"
        )
    )
    password: str = Field(min_length=1, max_length=SIGN_IN_PASSWORD_MAX)


class NewChat(BaseModel):
    """Body of POST /v1/chats: the members, the caller among them."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"users": [1, 2]}]})

    users: list[UserId] = Field(
        min_length=MIN_CHAT_USERS,
        max_length=MAX_USERS,
        description=(
            "at least 2 distinct users (4004), the caller among them (4030), all existing "
            "(4040); repeats are ignored"
        ),
    )


class AddMembers(BaseModel):
    """Body of PUT /v1/chats/{cid}: users to add to the chat."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"users": [3]}]})

    users: list[UserId] = Field(
        min_length=1,
        max_length=MAX_USERS,
        description="at least one user (4000), all existing (4040); repeats are ignored",
    )


class ReadUpTo(BaseModel):
    """Body of PUT /v1/chats/{cid}/read: the newest seq the caller has read."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"seq": 42}]})

    seq: int = Field(
        ge=0,
        le=UID_MAX,
        description="moves the marker forward only; clamped to the chat's lastSeq",
    )


class NewMessage(BaseModel):
    """Body of POST /v1/chats/{cid}/messages."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"txt": "hello"}]})

    txt: str = Field(
        min_length=1,
        max_length=TEXT_MAX,
        pattern=TEXT_WIRE_PATTERN,
        description=f"1-{TEXT_MAX} characters, not blank, without NUL (4003 otherwise)",
    )


# --- answers -----------------------------------------------------------------------------


class Token(BaseModel):
    """A signed-in session: send the token as `Authorization: Bearer <token>`."""

    object: Literal["token"] = "token"
    token: str = Field(description="JWT (HS256)")
    userId: UserId
    username: str = Field(description="the name as typed at sign-up")
    expiresAt: UnixSeconds


class User(BaseModel):
    """A user as the user sees themself."""

    object: Literal["user"] = "user"
    id: UserId
    username: str = Field(description="the name as typed at sign-up")
    gender: Literal["m", "f"]
    createdAt: UnixSeconds


class PublicUser(BaseModel):
    """Another user as anyone signed in may see them: id and name."""

    object: Literal["user"] = "user"
    id: UserId
    username: str = Field(description="the name as typed at sign-up")


#: Characters of the newest message a chat carries in lists.
PREVIEW_MAX = 100


class LastMessage(BaseModel):
    """A chat's newest message as lists show it: its text cut to PREVIEW_MAX characters."""

    id: str = _id_field("message id")
    seq: int = Field(ge=1, le=INT64_MAX, description="its seq in the chat")
    uid: UserId = Field(description="the author's user id")
    text: str = Field(description=f"the first {PREVIEW_MAX} characters of the text")
    createdAt: int = Field(description="unix time in seconds")


class Chat(BaseModel):
    """A chat, its members, where its history stands and what the caller has read."""

    object: Literal["chat"] = "chat"
    id: str = _id_field("chat id")
    users: list[UserId] = Field(description="member user ids")
    createdAt: int = Field(description="unix time in seconds")
    # Added by the message store v2; clients of the old API ignore them.
    lastSeq: int = Field(
        default=0, ge=0, le=INT64_MAX, description="seq of the newest message (0: none yet)"
    )
    lastMessage: LastMessage | None = Field(default=None, description="the newest message")
    readSeq: int = Field(default=0, ge=0, le=INT64_MAX, description="the caller's read marker")
    unread: int = Field(default=0, ge=0, le=INT64_MAX, description="lastSeq - readSeq")


class Message(BaseModel):
    """A message of a chat."""

    object: Literal["message"] = "message"
    id: str = _id_field("message id, assigned by the gateway before the record is produced")
    cid: str = _id_field("chat id")
    uid: UserId = Field(description="the author's user id")
    createdAt: int = Field(description="unix time in seconds, an integer as in the old API")
    text: str
    seq: int | None = Field(
        default=None,
        ge=1,
        le=INT64_MAX,
        description="1, 2, 3 ... per chat, in the order the chat's messages were stored; "
        "null in the answer to a post (the seq is given when a worker stores it)",
    )


class ReadMarker(BaseModel):
    """The caller's read marker in a chat after a move."""

    object: Literal["readMarker"] = "readMarker"
    cid: str = _id_field("chat id")
    seq: int = Field(ge=0, description="the newest seq the caller has read")
    unread: int = Field(ge=0, description="messages after it")


class Page(BaseModel, Generic[T]):
    """A page of a list; each list says which parameter takes its `nextCursor`."""

    object: Literal["list"] = "list"
    data: list[T]
    nextCursor: str | None = Field(
        default=None, description="where the next page starts; null on the last page"
    )


class ChatList(Page[Chat]):
    """A page of the caller's chats, most recent activity first (the list is a snapshot, so
    no chat is skipped or repeated while chats move during paging)."""

    nextCursor: str | None = Field(
        default=None,
        description="pass it back as `cursor` for the next page; opaque (never build one), "
        "valid for 15 minutes after the listing's first page; null on the last page",
    )


class UserList(Page[PublicUser]):
    """The users a look-up found, in one page."""

    nextCursor: None = Field(default=None, description="always null: a look-up is one page")


class MessageList(Page[Message]):
    """A page of a chat's messages, newest (highest seq) first."""

    nextCursor: str | None = Field(
        default=None,
        description="a message id. Paging back (no cursor, `before` or `beforeSeq`): the "
        "page's oldest message, to pass as `before` for the older page. Paging forward "
        "(`after` or `afterSeq`): the page's newest message, to pass as `after` for the "
        "newer page. Null when no message lies further that way",
    )


class Error(BaseModel):
    """Every answer that is not a success; the HTTP status is the code's first three digits.
    (`contracts.errors.error_body` builds it; a test checks the two agree.)"""

    object: Literal["error"] = "error"
    code: ErrorCode = Field(
        description="four digits; the HTTP status is the first three", examples=["4031"]
    )
    message: str


class Health(BaseModel):
    """The process serves HTTP."""

    object: Literal["health"] = "health"
    status: Literal["ok"] = "ok"


class ReadinessCheck(BaseModel):
    """One dependency of readiness."""

    ok: bool
    detail: str = Field(description='"ok", or what failed')


class Readiness(BaseModel):
    """Whether the gateway can serve: the Kafka producer, MySQL and at least one worker."""

    object: Literal["readiness"] = "readiness"
    ready: bool
    checks: dict[str, ReadinessCheck] = Field(description="by name: kafka, mysql, workers, events")


class Instance(BaseModel):
    """A worker instance the gateway's balancer knows, with its counters."""

    object: Literal["instance"] = "instance"
    id: str = Field(description="Consul service id")
    url: str
    requests: int
    failures: int
    ejections: int
    healthy: bool


class InstanceList(BaseModel):
    """Every worker instance the gateway's balancer knows (one page)."""

    object: Literal["list"] = "list"
    data: list[Instance]
    nextCursor: None = None
