"""Rules for request values that the gateway checks and the worker checks again.

The gateway validates what a client sent before it calls a worker, and the worker's
internal API validates what it is sent, so both use these functions: a value is either
returned in bounds or refused with `RequestProblem` carrying the platform's error code.
Each service maps `RequestProblem` to its error body at its HTTP edge.
"""

from __future__ import annotations

from collections.abc import Mapping

from contracts.errors import ErrorCode
from contracts.ids import is_object_id
from contracts.records import UID_MAX

LIMIT_DEFAULT, LIMIT_MAX = 50, 200
MAX_USERS = 1000  # user ids in one request body
#: What a refusal echoes of the value it was sent, at most.
ECHO = 40
_UID_DIGITS = len(str(UID_MAX))


class RequestProblem(ValueError):
    """A request value out of its rules; `code` is the platform's error code for it."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value} {message}")
        self.code = code
        self.message = message


def _echo(value: object) -> str:
    return repr(str(value)[:ECHO])


def chat_id(value: object) -> str:
    """A chat id: 24 lowercase hex characters (4001 otherwise)."""
    if not is_object_id(value):
        raise RequestProblem(ErrorCode.BAD_CHAT_ID, f"bad chat id: {_echo(value)}")
    assert isinstance(value, str)
    return value


def user_id(raw: str | None) -> int:
    """A user id from a query string: 1 .. 2**63 - 1 in ASCII decimal (4002 otherwise)."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > _UID_DIGITS:
        raise RequestProblem(ErrorCode.BAD_USER_ID, f"bad user id: {_echo(raw)}")
    uid = int(raw)
    if not 1 <= uid <= UID_MAX:
        raise RequestProblem(ErrorCode.BAD_USER_ID, f"bad user id: {_echo(raw)}")
    return uid


def user_ids(value: object) -> list[int]:
    """The `users` of a chat body: a list (4000) of at most MAX_USERS user ids (4002),
    without repeats, in the order given."""
    if not isinstance(value, list):
        raise RequestProblem(ErrorCode.MALFORMED, "users must be a list of user ids")
    if len(value) > MAX_USERS:
        raise RequestProblem(ErrorCode.MALFORMED, f"at most {MAX_USERS} users per request")
    for uid in value:
        # bool is an int subclass: refused along with floats and strings.
        if type(uid) is not int or not 1 <= uid <= UID_MAX:
            raise RequestProblem(ErrorCode.BAD_USER_ID, f"bad user id: {_echo(uid)}")
    return list(dict.fromkeys(value))


def limit(raw: str | None) -> int:
    """`limit`: 1 .. LIMIT_MAX, LIMIT_DEFAULT when absent or empty (4005 otherwise)."""
    if raw is None or raw == "":
        return LIMIT_DEFAULT
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4 or not 1 <= int(raw) <= LIMIT_MAX:
        raise RequestProblem(
            ErrorCode.BAD_PAGING, f"limit must be an integer 1-{LIMIT_MAX}, got {_echo(raw)}"
        )
    return int(raw)


def cursor_id(name: str, raw: str | None) -> str | None:
    """A cursor that is an id (a message id in `before`/`after`); absent or empty: None."""
    if raw is None or raw == "":
        return None
    if not is_object_id(raw):
        raise RequestProblem(ErrorCode.BAD_PAGING, f"{name} must be an id, got {_echo(raw)}")
    return raw


def one_direction(query: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(`before`, `after`) of a history query; both at once is 4005."""
    before, after = cursor_id("before", query.get("before")), cursor_id("after", query.get("after"))
    if before is not None and after is not None:
        raise RequestProblem(ErrorCode.BAD_PAGING, "use either before or after, not both")
    return before, after
