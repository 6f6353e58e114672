"""Rules for request values that the gateway checks and the worker checks again.

The gateway validates what a client sent before it calls a worker, and the worker's
internal API validates what it is sent, so both use these functions: a value is either
returned in bounds or refused with `RequestProblem` carrying the platform's error code.
Each service maps `RequestProblem` to its error body at its HTTP edge.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from contracts.errors import ErrorCode
from contracts.ids import is_object_id
from contracts.records import UID_MAX, json_int

LIMIT_DEFAULT, LIMIT_MAX = 50, 200
MAX_USERS = 1000  # user ids in one request body
MIN_CHAT_USERS = 2  # distinct users a chat is created with, at least
#: What a refusal echoes of the value it was sent, at most.
ECHO = 40


def visible_ascii(text: str) -> bool:
    """Whether every character is visible ASCII (U+0021..U+007E: no space, no control,
    nothing past ASCII): what a header value the platform reads or sends may hold (an
    Idempotency-Key, a request id, a token)."""
    return all("!" <= char <= "~" for char in text)


_UID_DIGITS = len(str(UID_MAX))


class RequestProblem(ValueError):
    """A request value out of its rules; `code` is the platform's error code for it."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value} {message}")
        self.code = code
        self.message = message


def _echo(value: object) -> str:
    """The value quoted, at most ECHO characters of it; the quote is cut too where its
    escapes (`\\x1f`, `\\U0001019d`: up to ten characters each) make it longer. An array
    or object is named, not quoted."""
    if isinstance(value, list | dict):  # str() of a deeply nested one recurses too far
        return "a JSON array" if isinstance(value, list) else "a JSON object"
    shown = repr(str(value)[:ECHO])
    return shown if len(shown) <= ECHO + 2 else f"{shown[: ECHO + 1]}...{shown[0]}"


def chat_id(value: object) -> str:
    """A chat id: 24 lowercase hex characters (4001 otherwise)."""
    if not is_object_id(value):
        raise RequestProblem(ErrorCode.BAD_CHAT_ID, f"bad chat id: {_echo(value)}")
    assert isinstance(value, str)
    return value


def _decimal(raw: str) -> int | None:
    """ASCII decimal digits as their value, leading zeros or not; None for anything else
    and for more significant digits than UID_MAX has (past every bound of a query value,
    and never int() of a long string). Until 2026-12-08 the length bound counted leading
    zeros: `limit=0200` was 200 and `limit=00050` a 4005 (found in review)."""
    if not raw.isascii() or not raw.isdigit():
        return None
    digits = raw.lstrip("0") or "0"
    return int(digits) if len(digits) <= _UID_DIGITS else None


def user_id(raw: str | None) -> int:
    """A user id from a query string: 1 .. 2**63 - 1 in ASCII decimal (4002 otherwise)."""
    uid = None if raw is None else _decimal(raw)
    if uid is None or not 1 <= uid <= UID_MAX:
        raise RequestProblem(ErrorCode.BAD_USER_ID, f"bad user id: {_echo(raw)}")
    return uid


def user_ids(value: object) -> list[int]:
    """The `users` of a chat body: a list (4000) of at most MAX_USERS user ids (4002),
    without repeats, in the order given."""
    if not isinstance(value, list):
        raise RequestProblem(ErrorCode.MALFORMED, "users must be a list of user ids")
    if len(value) > MAX_USERS:
        raise RequestProblem(ErrorCode.MALFORMED, f"at most {MAX_USERS} users per request")
    uids: list[int] = []
    for raw in value:
        uid = json_int(raw)
        if uid is None or not 1 <= uid <= UID_MAX:
            raise RequestProblem(ErrorCode.BAD_USER_ID, f"bad user id: {_echo(raw)}")
        uids.append(uid)
    return list(dict.fromkeys(uids))


def new_chat_users(value: object) -> list[int]:
    """The `users` of a chat to create: `user_ids`, at least MIN_CHAT_USERS distinct (4004)."""
    users = user_ids(value)
    if len(users) < MIN_CHAT_USERS:
        raise RequestProblem(
            ErrorCode.TOO_FEW_USERS, f"a chat needs at least {MIN_CHAT_USERS} distinct users"
        )
    return users


def added_users(value: object) -> list[int]:
    """The `users` to add to a chat: `user_ids`, at least one (4000)."""
    users = user_ids(value)
    if not users:
        raise RequestProblem(ErrorCode.MALFORMED, "users must name at least one user")
    return users


def limit(raw: str | None) -> int:
    """`limit`: 1 .. LIMIT_MAX, LIMIT_DEFAULT when absent or empty (4005 otherwise)."""
    if raw is None or raw == "":
        return LIMIT_DEFAULT
    value = _decimal(raw)
    if value is None or not 1 <= value <= LIMIT_MAX:
        raise RequestProblem(
            ErrorCode.BAD_PAGING, f"limit must be an integer 1-{LIMIT_MAX}, got {_echo(raw)}"
        )
    return value


def cursor_id(name: str, raw: str | None) -> str | None:
    """A cursor that is an id (a message id in `before`/`after`); absent or empty: None."""
    if raw is None or raw == "":
        return None
    if not is_object_id(raw):
        raise RequestProblem(ErrorCode.BAD_PAGING, f"{name} must be an id, got {_echo(raw)}")
    return raw


def seq_param(name: str, raw: str | None) -> int | None:
    """A seq in a query string (`beforeSeq`, `afterSeq`): 0 .. 2**63 - 1; absent or empty: None."""
    if raw is None or raw == "":
        return None
    value = _decimal(raw)
    if value is None or value > UID_MAX:
        raise RequestProblem(ErrorCode.BAD_PAGING, f"{name} must be a seq, got {_echo(raw)}")
    return value


#: The history cursors: (name, "before"/"after"); a request names at most one of them.
HISTORY_CURSORS = (
    ("before", "before"),
    ("after", "after"),
    ("beforeSeq", "before"),
    ("afterSeq", "after"),
)


#: The paging parameters of the chat list, and of a chat's history.
LIST_PAGING = ("limit", "cursor")
HISTORY_PAGING = ("limit", *(name for name, _ in HISTORY_CURSORS))


def paging_once(query: Mapping[str, str], names: Iterable[str]) -> None:
    """Each of a route's paging parameters (`names`: LIST_PAGING or HISTORY_PAGING) at
    most once (4005): given twice (`?limit=5&limit=abc`), the first used to win silently
    and the other to be ignored. The other list's parameters are not the route's: like
    any unknown one, they are ignored however often they are given. A plain mapping,
    which holds one value per name, passes."""
    getall = getattr(query, "getall", None)
    if getall is None:
        return
    for name in names:
        if len(getall(name, ())) > 1:
            raise RequestProblem(ErrorCode.BAD_PAGING, f"{name} is given more than once")


def history_cursor(query: Mapping[str, str]) -> tuple[str, int | str | None]:
    """The one cursor of a history query: ("before" or "after", a message id or a seq).

    `before`/`after` take a message id, `beforeSeq`/`afterSeq` a seq; more than one is 4005.
    """
    given: list[tuple[str, int | str]] = []
    for name, direction in HISTORY_CURSORS:
        value = (
            cursor_id(name, query.get(name))
            if direction == name
            else seq_param(name, query.get(name))
        )
        if value is not None:
            given.append((direction, value))
    if len(given) > 1:
        names = ", ".join(name for name, _ in HISTORY_CURSORS)
        raise RequestProblem(ErrorCode.BAD_PAGING, f"use at most one of {names}")
    return given[0] if given else ("before", None)


#: An opaque cursor given out in a list's `nextCursor` (base64url, no padding).
OPAQUE_CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,200}$")


def list_cursor(raw: str | None) -> str | None:
    """The chat list's `cursor`: a nextCursor given out before (its form checked here, its
    content by the worker); absent or empty: None (4005 otherwise)."""
    if raw is None or raw == "":
        return None
    if OPAQUE_CURSOR.fullmatch(raw) is None:
        raise RequestProblem(ErrorCode.BAD_PAGING, "cursor must be a nextCursor of this list")
    return raw


def read_seq(body: object) -> int:
    """The `seq` of a `{"seq": N}` read-marker body: 0 .. 2**63 - 1 (4000 otherwise)."""
    seq = json_int(body.get("seq")) if isinstance(body, dict) else None
    if seq is None or not 0 <= seq <= UID_MAX:
        raise RequestProblem(ErrorCode.MALFORMED, 'body must be {"seq": <seq, an integer >= 0>}')
    return seq
