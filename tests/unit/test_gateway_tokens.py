"""JWT issuing and verification: HS256 only, required claims, expiry, tampering."""

from __future__ import annotations

import base64
import time

import jwt
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import ErrorCode
from gateway.domain.tokens import CLOCK_SKEW, TokenCodec, bearer_token
from gateway.errors import GatewayError

SECRET = "s" * 40
codec = TokenCodec(SECRET, "dialogue-test", ttl=3600)


def _code(token: str) -> ErrorCode:
    with pytest.raises(GatewayError) as caught:
        codec.verify(token)
    return caught.value.code


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


def test_issued_token_verifies_with_claims() -> None:
    now = time.time()
    token = codec.issue(7, "alice", now)
    assert token.expires_at == int(now) + 3600
    claims = jwt.decode(token.token, SECRET, algorithms=["HS256"], issuer="dialogue-test")
    assert claims["sub"] == "7" and claims["user_id"] == 7
    assert {"iss", "iat", "exp"} <= set(claims)
    principal = codec.verify(token.token)
    assert (principal.user_id, principal.username) == (7, "alice")
    assert token.public() == {
        "object": "token",
        "token": token.token,
        "userId": 7,
        "username": "alice",
        "expiresAt": token.expires_at,
    }


def test_expired_token_is_rejected() -> None:
    token = codec.issue(7, "alice", time.time() - 7200)
    assert _code(token.token) is ErrorCode.BAD_TOKEN


def test_alg_none_is_rejected() -> None:
    claims = {"sub": "7", "user_id": 7, "iss": "dialogue-test", "iat": 1, "exp": 2**40}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert _code(unsigned) is ErrorCode.BAD_TOKEN


def test_other_algorithm_with_same_secret_is_rejected() -> None:
    now = int(time.time())
    claims = {"sub": "7", "user_id": 7, "iss": "dialogue-test", "iat": now, "exp": now + 60}
    assert _code(jwt.encode(claims, SECRET * 2, algorithm="HS512")) is ErrorCode.BAD_TOKEN


def test_tampered_payload_and_wrong_secret_are_rejected() -> None:
    token = codec.issue(7, "alice", time.time()).token
    header, _, signature = token.split(".")
    now = int(time.time())
    forged = {"sub": "1", "user_id": 1, "iss": "dialogue-test", "iat": now, "exp": now + 60}
    assert _code(f"{header}.{_b64(forged)}.{signature}") is ErrorCode.BAD_TOKEN
    other = TokenCodec("o" * 40, "dialogue-test", 3600).issue(7, "alice", time.time())
    assert _code(other.token) is ErrorCode.BAD_TOKEN


def test_wrong_issuer_missing_claims_and_bad_subject_are_rejected() -> None:
    now = int(time.time())
    base = {"sub": "7", "user_id": 7, "iss": "dialogue-test", "iat": now, "exp": now + 60}
    assert _code(jwt.encode({**base, "iss": "elsewhere"}, SECRET)) is ErrorCode.BAD_TOKEN
    missing = {k: v for k, v in base.items() if k != "user_id"}
    assert _code(jwt.encode(missing, SECRET)) is ErrorCode.BAD_TOKEN
    assert _code(jwt.encode({**base, "sub": "8"}, SECRET)) is ErrorCode.BAD_TOKEN
    assert _code(jwt.encode({**base, "user_id": "7"}, SECRET)) is ErrorCode.BAD_TOKEN
    assert _code("not.a.jwt") is ErrorCode.BAD_TOKEN


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, ErrorCode.NO_TOKEN),
        ("", ErrorCode.NO_TOKEN),
        ("Basic abc", ErrorCode.BAD_TOKEN),
        ("Bearer ", ErrorCode.BAD_TOKEN),
    ],
)
def test_bearer_header(header: str | None, code: ErrorCode) -> None:
    with pytest.raises(GatewayError) as caught:
        bearer_token(header)
    assert caught.value.code is code


def test_bearer_header_token() -> None:
    assert bearer_token("bearer abc.def.ghi") == "abc.def.ghi"


@pytest.mark.parametrize("user_id", [0, -1, 2**63, 10**30])
def test_a_signed_token_with_a_user_id_out_of_range_is_4011(user_id: int) -> None:
    token = codec.issue(user_id, "alice", time.time()).token
    assert _code(token) is ErrorCode.BAD_TOKEN


@given(st.text(min_size=1).filter(lambda t: not t.isascii()))
def test_a_token_that_is_not_ascii_is_4011_not_a_crash(text: str) -> None:
    """aiohttp reads header bytes that are not UTF-8 as lone surrogates (\\udcff)."""
    assert _code(text) is ErrorCode.BAD_TOKEN
    assert _code(codec.issue(7, "alice", time.time()).token + "\udcff") is ErrorCode.BAD_TOKEN


def test_a_token_issued_by_a_gateway_whose_clock_is_a_little_ahead_is_accepted() -> None:
    ahead = codec.issue(7, "alice", time.time() + CLOCK_SKEW - 1)  # iat in our future
    assert codec.verify(ahead.token).user_id == 7
    too_far = codec.issue(7, "alice", time.time() + CLOCK_SKEW + 30)
    assert _code(too_far.token) is ErrorCode.BAD_TOKEN
