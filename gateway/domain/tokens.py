"""JWT access tokens: HS256 only, with sub, user_id, iss, iat, exp and auth_time.

`auth_time` (OpenID Connect's name) is the moment of the sign-in or sign-up that began
the session, in unix seconds; a refresh carries it over, so it dates the session, not the
token. Tokens issued before it existed have none, and their `iat` stands in for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt

from contracts.errors import ErrorCode
from gateway.errors import GatewayError

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "user_id", "iss", "iat", "exp"]
#: Seconds of clock difference between gateways a token survives: one gateway signs it, any
#: other may check its `iat` (PyJWT refuses a token issued "in the future") and `exp`.
CLOCK_SKEW = 5
#: SESSION_MAX_AGE's default: a session, and every token of it, ends 7 days after sign-in.
SESSION_MAX_AGE = 7 * 24 * 3600


@dataclass(frozen=True)
class Token:
    token: str
    user_id: int
    username: str
    expires_at: int

    def public(self) -> dict[str, object]:
        """The token object returned by sign-up and sign-in."""
        return {
            "object": "token",
            "token": self.token,
            "userId": self.user_id,
            "username": self.username,
            "expiresAt": self.expires_at,
        }


@dataclass(frozen=True)
class Principal:
    """Who is calling, as proven by a verified token."""

    user_id: int
    username: str
    expires_at: int  # unix seconds (`exp`)
    auth_time: int  # unix seconds: the session's sign-in (`auth_time`, else `iat`)


class TokenExpired(GatewayError):
    """A token that was ours but is past its `exp` (4011, like any unusable token)."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.BAD_TOKEN, "token expired")


class SessionExpired(GatewayError):
    """A session older than SESSION_MAX_AGE, which no refresh extends (4011)."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.BAD_TOKEN, "session expired: sign in again")


class TokenCodec:
    """Issues and verifies tokens with one secret and issuer.

    A token lives `ttl` seconds, but never past its session's end: `max_age` seconds
    after the sign-in (`auth_time`) that began the session.
    """

    def __init__(self, secret: str, issuer: str, ttl: int, max_age: int = SESSION_MAX_AGE) -> None:
        self._secret = secret
        self._issuer = issuer
        self._ttl = ttl
        self._max_age = max_age

    def issue(self, user_id: int, username: str, now: float) -> Token:
        """The first token of a new session (sign-up, sign-in), which begins `now`."""
        return self._sign(user_id, username, int(now), int(now))

    def refresh(self, caller: Principal, username: str, now: float) -> Token:
        """A new token of the caller's session, for `username` (the current name).

        It lives `ttl` from `now`, or less when the session ends sooner; from the end of
        the session on (`max_age` after `auth_time`) there is none: SessionExpired.
        """
        iat = int(now)
        if iat >= caller.auth_time + self._max_age:
            raise SessionExpired
        return self._sign(caller.user_id, username, iat, caller.auth_time)

    def _sign(self, user_id: int, username: str, iat: int, auth_time: int) -> Token:
        exp = min(iat + self._ttl, auth_time + self._max_age)
        claims = {
            "sub": str(user_id),
            "user_id": user_id,
            "username": username,
            "iss": self._issuer,
            "iat": iat,
            "exp": exp,
            "auth_time": auth_time,
        }
        token = jwt.encode(claims, self._secret, algorithm=ALGORITHM)
        return Token(token, user_id, username, exp)

    def verify(self, token: str) -> Principal:
        """The caller behind a token, or 4011 for any token that is not ours and current."""
        if not token.isascii():  # a JWT is base64url; PyJWT would fail to encode it
            raise GatewayError(ErrorCode.BAD_TOKEN, "invalid token")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                options={"require": REQUIRED_CLAIMS},
                leeway=CLOCK_SKEW,
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired from None
        except jwt.InvalidTokenError:
            raise GatewayError(ErrorCode.BAD_TOKEN, "invalid token") from None
        user_id, sub = claims["user_id"], claims["sub"]
        if type(user_id) is not int or not 1 <= user_id < 2**63 or sub != str(user_id):
            raise GatewayError(ErrorCode.BAD_TOKEN, "invalid token subject")
        username = claims.get("username")
        # PyJWT has checked that `exp` is a number in the future, `iat` one not in it.
        expires_at, issued_at = int(claims["exp"]), int(claims["iat"])
        # Absent (a token from before refresh existed), the session began at `iat`. Present,
        # it is at most `iat`, give or take the clocks of the gateways that signed them.
        auth_time = claims.get("auth_time", issued_at)
        if "auth_time" in claims and not _valid_auth_time(auth_time, issued_at):
            raise GatewayError(ErrorCode.BAD_TOKEN, "invalid token auth_time")
        name = username if isinstance(username, str) else ""
        return Principal(user_id, name, expires_at, auth_time)


def _valid_auth_time(value: object, issued_at: int) -> bool:
    return type(value) is int and 0 <= value <= issued_at + CLOCK_SKEW


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header (4010 when absent)."""
    if not header:
        raise GatewayError(ErrorCode.NO_TOKEN, "authorization token required")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise GatewayError(ErrorCode.BAD_TOKEN, "expected `Authorization: Bearer <token>`")
    return token.strip()
