"""Refreshing a token: `auth_time` dates the session, a refresh carries it over, tokens
without it (issued before refresh existed) count their `iat`, and no token outlives the
session's SESSION_MAX_AGE."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from contracts.errors import ErrorCode
from gateway.domain.tokens import (
    CLOCK_SKEW,
    REQUIRED_CLAIMS,
    Principal,
    SessionExpired,
    TokenCodec,
)
from gateway.errors import GatewayError

SECRET = "s" * 40
ISSUER = "dialogue-test"
TTL, MAX_AGE = 3600, 7 * 24 * 3600
codec = TokenCodec(SECRET, ISSUER, ttl=TTL, max_age=MAX_AGE)
#: A fixed moment to refresh at: codec.refresh takes the time it is told, no clock.
T0 = 1_800_000_000


def _claims(token: str) -> dict[str, Any]:
    """The claims of a token, signature checked, times not (it may be of another day)."""
    options = {"verify_exp": False, "verify_iat": False}
    claims: dict[str, Any] = jwt.decode(
        token, SECRET, algorithms=["HS256"], issuer=ISSUER, options=options
    )
    return claims


def _mint(**claims: object) -> str:
    """A token signed with the codec's secret, valid now, with `claims` over the usual."""
    now = int(time.time())
    base = {"sub": "7", "user_id": 7, "iss": ISSUER, "iat": now, "exp": now + 600}
    return jwt.encode({**base, **claims}, SECRET, algorithm="HS256")


def _session(auth_time: int) -> Principal:
    return Principal(7, "alice", auth_time + TTL, auth_time)


def test_a_new_session_begins_at_its_sign_in() -> None:
    now = time.time()
    token = codec.issue(7, "alice", now)
    claims = _claims(token.token)
    assert claims["auth_time"] == claims["iat"] == int(now)
    assert token.expires_at == claims["exp"] == int(now) + TTL
    assert codec.verify(token.token).auth_time == int(now)


def test_a_refresh_carries_the_sign_in_over_and_gives_a_full_ttl() -> None:
    signed_in = codec.issue(7, "alice", time.time() - 1800)
    caller = codec.verify(signed_in.token)
    now = time.time()
    token = codec.refresh(caller, "alice2", now)
    claims = _claims(token.token)
    assert claims["auth_time"] == caller.auth_time == _claims(signed_in.token)["auth_time"]
    assert (claims["iat"], claims["exp"]) == (int(now), int(now) + TTL)
    assert (claims["sub"], claims["user_id"], claims["username"]) == ("7", 7, "alice2")
    assert token.public() == {
        "object": "token",
        "token": token.token,
        "userId": 7,
        "username": "alice2",
        "expiresAt": int(now) + TTL,
    }
    again = codec.verify(token.token)
    assert (again.user_id, again.username, again.auth_time) == (7, "alice2", caller.auth_time)


def test_a_token_without_auth_time_still_verifies_and_its_iat_dates_its_session() -> None:
    """Tokens signed before this change are accepted on every route, and refreshed as
    sessions begun at their `iat`."""
    assert "auth_time" not in REQUIRED_CLAIMS
    old = _mint()
    iat = _claims(old)["iat"]
    caller = codec.verify(old)
    assert (caller.user_id, caller.auth_time) == (7, iat)
    assert _claims(codec.refresh(caller, "alice", time.time()).token)["auth_time"] == iat


def test_the_session_ends_max_age_after_its_sign_in() -> None:
    """Up to its last JWT_TTL a refresh gives a full TTL; then a token up to the end; from
    the end on (MAX_AGE after auth_time, the bound itself included) none."""
    end = T0 + MAX_AGE
    assert codec.refresh(_session(T0), "alice", T0 + 1).expires_at == T0 + 1 + TTL
    assert codec.refresh(_session(T0), "alice", end - TTL - 1).expires_at == end - 1
    full = codec.refresh(_session(T0), "alice", end - TTL)
    assert full.expires_at == end
    cut = codec.refresh(_session(T0), "alice", end - 60)
    assert cut.expires_at == end
    last = codec.refresh(_session(T0), "alice", end - 1)
    assert last.expires_at == end
    assert codec.refresh(_session(T0), "alice", end - 0.5).expires_at == end  # second 1 of 1
    for now in (end, end + 0.5, end + 1, end + 10**9):
        with pytest.raises(SessionExpired) as caught:
            codec.refresh(_session(T0), "alice", now)
        assert caught.value.code is ErrorCode.BAD_TOKEN
        assert "sign in again" in caught.value.message


def test_a_session_max_age_of_one_ttl_never_refreshes_past_its_first_token() -> None:
    short = TokenCodec(SECRET, ISSUER, ttl=TTL, max_age=TTL)
    assert short.issue(7, "alice", T0).expires_at == T0 + TTL
    assert short.refresh(_session(T0), "alice", T0 + 10).expires_at == T0 + TTL
    with pytest.raises(SessionExpired):
        short.refresh(_session(T0), "alice", T0 + TTL)


@given(
    age=st.integers(-CLOCK_SKEW, 2 * MAX_AGE),
    ttl=st.integers(60, 10**6),
    extra=st.integers(0, 10**6),
    fraction=st.floats(0, 1, exclude_max=True),
)
def test_no_refreshed_token_outlives_its_session_or_its_ttl(
    age: int, ttl: int, extra: int, fraction: float
) -> None:
    max_age = ttl + extra
    custom = TokenCodec(SECRET, ISSUER, ttl=ttl, max_age=max_age)
    now = T0 + age + fraction  # may round up to the next second: judged by int(now)
    if int(now) - T0 >= max_age:
        with pytest.raises(SessionExpired):
            custom.refresh(_session(T0), "alice", now)
        return
    token = custom.refresh(_session(T0), "alice", now)
    assert token.expires_at == min(int(now) + ttl, T0 + max_age)
    assert token.expires_at > int(now)
    assert _claims(token.token)["auth_time"] == T0


def _auth_time_is_valid(value: object, iat: int) -> bool:
    return type(value) is int and 0 <= value <= iat + CLOCK_SKEW


#: auth_time as a token could carry it: integers about every bound (0, iat, 2**63),
#: floats (integral ones too), bools, and what JSON has besides.
AUTH_TIMES = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(0, 2**31),
    st.integers(-5, 5),
    st.integers(2**63 - 2, 2**63 + 2),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(value=AUTH_TIMES)
@example(value=0)
@example(value=-1)
@example(value=True)
@example(value=1.0)
@example(value=float(int(time.time())))
@example(value=str(int(time.time())))
@example(value=2**63)
@example(value=2**64 + 1)
def test_a_signed_auth_time_is_taken_only_as_an_integer_not_after_iat(value: object) -> None:
    """Only a token signed with our secret gets this far, so this is about our own bugs
    and a leaked key, not forgery: whatever auth_time holds, verifying either takes it
    as it is or refuses the token with 4011, never crashes or coerces it."""
    iat = int(time.time())
    token = _mint(iat=iat, exp=iat + 600, auth_time=value)
    if _auth_time_is_valid(value, iat):
        caller = codec.verify(token)
        assert caller.auth_time == value and type(caller.auth_time) is int
    else:
        with pytest.raises(GatewayError) as caught:
            codec.verify(token)
        assert caught.value.code is ErrorCode.BAD_TOKEN


@pytest.mark.parametrize("skew", [0, 1, CLOCK_SKEW])
def test_an_auth_time_a_little_after_iat_is_a_gateway_clock_behind_another(skew: int) -> None:
    """Gateway A signs the user in at its time T; gateway B, whose clock is a few seconds
    behind, refreshes at T - skew: its token's auth_time is after its iat."""
    now = int(time.time())
    refreshed = codec.refresh(_session(now), "alice", now - skew)
    assert codec.verify(refreshed.token).auth_time == now


@pytest.mark.parametrize("ahead", [CLOCK_SKEW + 1, 3600, 2**63])
def test_an_auth_time_in_the_future_is_refused(ahead: int) -> None:
    now = int(time.time())
    with pytest.raises(GatewayError) as caught:
        codec.verify(_mint(iat=now, auth_time=now + ahead))
    assert caught.value.code is ErrorCode.BAD_TOKEN
