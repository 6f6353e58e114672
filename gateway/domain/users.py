"""Users as the gateway stores them, and the rules for signing up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from contracts.errors import ErrorCode
from gateway.domain.usernames import Username, sign_in_name, username
from gateway.errors import GatewayError

PASSWORD_MIN, PASSWORD_MAX = 6, 64
PASSWORD_SIGN_IN_MAX = 256
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
    username: Username
    password: str
    gender: Gender


@dataclass(frozen=True)
class Credentials:
    username: Username
    password: str


def _invalid(message: str) -> GatewayError:
    return GatewayError(ErrorCode.MALFORMED, message)


def _string(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise _invalid(f"{field} must be a string")
    return value


def parse_sign_up(body: dict[str, Any]) -> SignUp:
    """Validate a sign-up body (4000 with the reason when it is not acceptable)."""
    name = username(_string(body, "username"))
    password = _string(body, "password")
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise _invalid(f"password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters")
    if _string(body, "passwordConfirm") != password:
        raise _invalid("passwordConfirm does not match password")
    gender = body.get("gender")
    if gender == "m":
        return SignUp(name, password, "m")
    if gender == "f":
        return SignUp(name, password, "f")
    raise _invalid('gender must be "m" or "f"')


def parse_sign_in(body: dict[str, Any]) -> Credentials:
    """Read username and password from a sign-in body; extra fields are ignored.

    A name no account can have (usernames.refusal) is 4000 here too, without a look-up;
    one only sign-up refuses (two spaces in a row, say) is looked up, as older accounts
    may hold it.
    """
    name, password = _string(body, "username"), _string(body, "password")
    if not password or len(password) > PASSWORD_SIGN_IN_MAX:
        raise _invalid("username and password are required")
    return Credentials(sign_in_name(name), password)
