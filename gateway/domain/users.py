"""Users as the gateway stores them, and the rules for signing up."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from contracts.errors import ErrorCode
from gateway.errors import GatewayError

USERNAME_MIN, USERNAME_MAX = 5, 30
PASSWORD_MIN, PASSWORD_MAX = 6, 64
Gender = Literal["m", "f"]


@dataclass(frozen=True)
class User:
    id: int
    username: str
    password_hash: str
    gender: Gender
    created_at: int

    def public(self) -> dict[str, Any]:
        """The user object of GET /v1/users/me."""
        return {
            "object": "user",
            "id": self.id,
            "username": self.username,
            "gender": self.gender,
            "createdAt": self.created_at,
        }


@dataclass(frozen=True)
class SignUp:
    username: str
    password: str
    gender: Gender


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def _invalid(message: str) -> GatewayError:
    return GatewayError(ErrorCode.MALFORMED, message)


def _string(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise _invalid(f"{field} must be a string")
    return value


def _check_username(username: str) -> str:
    if not USERNAME_MIN <= len(username) <= USERNAME_MAX:
        raise _invalid(f"username must be {USERNAME_MIN}-{USERNAME_MAX} characters")
    if username != username.strip() or any(
        unicodedata.category(ch).startswith(("C", "Z")) and ch != " " for ch in username
    ):
        raise _invalid("username must not start or end with spaces or contain control characters")
    return username


def parse_sign_up(body: dict[str, Any]) -> SignUp:
    """Validate a sign-up body (4000 with the reason when it is not acceptable)."""
    username = _check_username(_string(body, "username"))
    password = _string(body, "password")
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise _invalid(f"password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters")
    if _string(body, "passwordConfirm") != password:
        raise _invalid("passwordConfirm does not match password")
    gender = body.get("gender")
    if gender == "m":
        return SignUp(username, password, "m")
    if gender == "f":
        return SignUp(username, password, "f")
    raise _invalid('gender must be "m" or "f"')


def parse_sign_in(body: dict[str, Any]) -> Credentials:
    """Read username and password from a sign-in body; extra fields are ignored."""
    username, password = _string(body, "username"), _string(body, "password")
    if not username or not password or len(username) > 256 or len(password) > 256:
        raise _invalid("username and password are required")
    return Credentials(username, password)
