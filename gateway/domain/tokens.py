"""JWT access tokens: HS256 only, with sub, user_id, iss, iat and exp."""

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


class TokenExpired(GatewayError):
    """A token that was ours but is past its `exp` (4011, like any unusable token)."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.BAD_TOKEN, "token expired")


class TokenCodec:
    """Issues and verifies tokens with one secret and issuer."""

    def __init__(self, secret: str, issuer: str, ttl: int) -> None:
        self._secret = secret
        self._issuer = issuer
        self._ttl = ttl

    def issue(self, user_id: int, username: str, now: float) -> Token:
        iat = int(now)
        exp = iat + self._ttl
        claims = {
            "sub": str(user_id),
            "user_id": user_id,
            "username": username,
            "iss": self._issuer,
            "iat": iat,
            "exp": exp,
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
        # PyJWT has checked that `exp` is a number in the future.
        return Principal(user_id, username if isinstance(username, str) else "", int(claims["exp"]))


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header (4010 when absent)."""
    if not header:
        raise GatewayError(ErrorCode.NO_TOKEN, "authorization token required")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise GatewayError(ErrorCode.BAD_TOKEN, "expected `Authorization: Bearer <token>`")
    return token.strip()
