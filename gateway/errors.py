"""The gateway's one base exception: a shared error code and a message for the client."""

from __future__ import annotations

from contracts.errors import ErrorCode


class GatewayError(Exception):
    """An error with a contract code; the HTTP edge turns it into status and JSON body."""

    def __init__(
        self, code: ErrorCode, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{code.value} {message}")
        self.code = code
        self.message = message
        self.headers = headers or {}

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later."""
        return self.code.retryable
