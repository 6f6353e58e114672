"""Error codes shared by gateway and worker, and the error body both return.

A code is four digits as a string; the HTTP status is its first three.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    MALFORMED = "4000"  # malformed JSON or body
    BAD_CHAT_ID = "4001"
    BAD_USER_ID = "4002"
    BAD_TEXT = "4003"  # empty or too long message text
    TOO_FEW_USERS = "4004"  # a chat needs at least 2 distinct users
    BAD_PAGING = "4005"  # bad cursor/paging parameter
    NO_TOKEN = "4010"
    BAD_TOKEN = "4011"  # bad or expired token
    FORBIDDEN = "4030"
    NOT_MEMBER = "4031"
    NOT_FOUND = "4040"
    METHOD_NOT_ALLOWED = "4050"
    REQUEST_TIMEOUT = "4080"  # the request body did not arrive in time
    USERNAME_TAKEN = "4090"
    CHAT_FULL = "4091"  # adding the users would take the chat past its member limit
    TOO_LARGE = "4130"
    TOO_MANY_ATTEMPTS = "4290"
    INTERNAL = "5000"
    NO_WORKER = "5030"
    BUS_UNAVAILABLE = "5031"
    USER_STORE_UNAVAILABLE = "5032"

    @property
    def status(self) -> int:
        """The HTTP status of this code: its first three digits."""
        return int(self.value[:3])

    @property
    def retryable(self) -> bool:
        """Whether retrying the same request later can succeed: a 5xxx, a rate limit (4290),
        or a body that arrived too slowly (4080), which says nothing against the request."""
        return self.value.startswith("5") or self in (
            ErrorCode.REQUEST_TIMEOUT,
            ErrorCode.TOO_MANY_ATTEMPTS,
        )


def error_body(code: ErrorCode, message: str) -> dict[str, str]:
    """The JSON body for an error: {"object":"error","code":"4031","message":...}."""
    return {"object": "error", "code": code.value, "message": message}
